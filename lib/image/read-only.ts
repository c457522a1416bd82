// Apptainer's IsReadOnlyFilesystem, but it finds the error however deeply it was wrapped.
import { hasErrorCode } from '../errors';

/** True if `err` (or any error in its cause chain) is the "read-only filesystem" error. */
export function isReadOnlyFilesystem(err: unknown): boolean {
  return hasErrorCode(err, 'ERR_READ_ONLY_FS');
}
