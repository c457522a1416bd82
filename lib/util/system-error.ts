// Telling a syscall's failure apart: which errno, which syscall.

import { SystemError } from '../errors';

export function isSystemError(err: unknown, code?: string, syscall?: string | RegExp): err is SystemError {
  if (!(err instanceof SystemError)) return false;
  if (code !== undefined && err.code !== code) return false;
  if (syscall !== undefined) return typeof syscall === 'string' ? err.syscall === syscall : syscall.test(err.syscall);
  return true;
}
