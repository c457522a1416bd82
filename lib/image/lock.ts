// Byte-range locks on the ext3 partitions of an image, so that two writers (or a writer and
// a reader) of one overlay never meet. OFD locks: they belong to the open file, conflict
// between two opens in one process, and are released when the image's fd is closed.

import { debug } from '../util/debug';
import { ImgmountError, hasErrorCode } from '../errors';
import { native } from '../native/binding';
import { EXT3 } from './constants';
import type { Section } from './section';

/** Locks every EXT3 partition: write locks when writable, read locks otherwise. */
export async function lockExt3Partitions(
  fd: number,
  partitions: readonly Section[],
  writable: boolean,
  displayPath: string,
  warnings: string[],
): Promise<void> {
  for (const p of partitions) {
    if (p.type !== EXT3) continue;
    const type = writable ? 'write' : 'read';
    try {
      await native((b) => b.ofdSetLock(fd, type, p.offset, p.size));
    } catch (err) {
      if (hasErrorCode(err, 'ENOLCK')) {
        // Some network filesystems have no locks; go on, but say what that risks.
        const msg = `could not lock ${displayPath} partition "${p.name}": the filesystem does not support locks; concurrent writers may corrupt it`;
        debug(msg);
        warnings.push(msg);
        continue;
      }
      if (hasErrorCode(err, 'EAGAIN') || hasErrorCode(err, 'EACCES')) {
        const holder = await native((b) => b.ofdGetLock(fd, type, p.offset, p.size)).catch(() => null);
        const message = writable
          ? `can't open ${displayPath} for writing, currently in use by another process` +
            (holder ? ` (a ${holder.type} lock covers partition "${p.name}")` : '')
          : `can't open ${displayPath} for reading, currently in use for writing by another process`;
        throw new ImgmountError('ERR_IMAGE_LOCKED', message, {
          path: displayPath,
          cause: err,
          details: { partition: p.name, holder },
        });
      }
      throw err;
    }
  }
}
