// Error shapes of imgmount.
//
// Two families, both with a stable `code` (part of the API; messages may change):
//  - SystemError: a syscall failed. Shaped like Node's own (code 'EBUSY', negative errno,
//    syscall, path, dest) so `util.getSystemErrorName(err.errno)` works.
//  - ImgmountError: imgmount itself refuses or cannot go on. `code` is one of ERR_* below.
// Lower errors are chained through `cause`.

import { getSystemErrorMap } from 'node:util';

/**
 * Every code an ImgmountError has. Argument errors are not ImgmountErrors: they are Node's own
 * shape, a TypeError (ERR_INVALID_ARG_TYPE, ERR_INVALID_ARG_VALUE) or RangeError
 * (ERR_OUT_OF_RANGE) with `code` (see ArgumentErrorCode).
 */
export type ImgmountErrorCode =
  | 'ERR_NATIVE_LOAD'
  | 'ERR_IMAGE_UNKNOWN_FORMAT'
  | 'ERR_IMAGE_UNSUPPORTED_FILE_TYPE'
  | 'ERR_IMAGE_NOT_READABLE'
  | 'ERR_IMAGE_NOT_WRITABLE'
  | 'ERR_IMAGE_CLOSED'
  | 'ERR_IMAGE_LOCKED'
  | 'ERR_SQUASHFS_INVALID'
  | 'ERR_SQUASHFS_UNSUPPORTED'
  | 'ERR_EXT3_INVALID'
  | 'ERR_EXT3_UNSUPPORTED_FEATURES'
  | 'ERR_SIF_INVALID'
  | 'ERR_SIF_UNSUPPORTED_VERSION'
  | 'ERR_SIF_TRUNCATED'
  | 'ERR_SIF_WRITE'
  | 'ERR_SIF_NO_OBJECT'
  | 'ERR_ARCH_MISMATCH'
  | 'ERR_PARTITION_OUT_OF_BOUNDS'
  | 'ERR_PARTITION_INVALID'
  | 'ERR_NO_PARTITION'
  | 'ERR_NO_SECTION'
  | 'ERR_NO_ROOTFS'
  | 'ERR_READ_ONLY_FS'
  | 'ERR_DRIVER_REGISTRY'
  | 'ERR_DRIVER_STATE'
  | 'ERR_DRIVER_UNAVAILABLE'
  | 'ERR_LOOP_NO_FREE_DEVICE'
  | 'ERR_LOOP_VERIFY'
  | 'ERR_LOOP_CLOSED'
  | 'ERR_LOOP_LOCK_TIMEOUT'
  | 'ERR_MOUNT_UNSUPPORTED_FS'
  | 'ERR_MOUNT_BAD_SUPERBLOCK'
  | 'ERR_MOUNT_UNSUPPORTED_COMPRESSION'
  | 'ERR_MOUNT_FAILED'
  | 'ERR_NOT_MOUNTED'
  | 'ERR_IDMAP_UNSUPPORTED'
  | 'ERR_NAMESPACE'
  | 'ERR_HELPER_FAILED'
  | 'ERR_HELPER_TIMEOUT'
  | 'ERR_FUSE_UNAVAILABLE'
  | 'ERR_KEY_REJECTED'
  | 'ERR_NO_DRIVER'
  | 'ERR_ENCRYPTION_UNSUPPORTED'
  | 'ERR_UNSAFE_TARGET'
  | 'ERR_UNSAFE_PATH'
  | 'ERR_UNSAFE_STATE_DIR'
  | 'ERR_UNSAFE_OVERRIDE'
  | 'ERR_MOUNT_RECORD_INVALID'
  | 'ERR_TARGET_IN_USE';

export interface ImgmountErrorOptions {
  cause?: unknown;
  /** The image or file the error is about. */
  path?: string;
  /** Any further machine-readable facts (partition name, feature list, ...). */
  details?: Record<string, unknown>;
}

export class ImgmountError extends Error {
  readonly code: ImgmountErrorCode;
  readonly path?: string;
  readonly details?: Record<string, unknown>;

  constructor(code: ImgmountErrorCode, message: string, options: ImgmountErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    if (options.path !== undefined) this.path = options.path;
    if (options.details !== undefined) this.details = options.details;
  }

  override get name(): string {
    return 'ImgmountError';
  }
}

export interface SystemErrorInit {
  /** Negative errno (libuv convention); a positive one is negated. */
  errno: number;
  syscall: string;
  path?: string;
  dest?: string;
  /** Messages the kernel left in an fs context (new mount API). */
  kernelMessages?: string[];
  /** Context put in front of Node's usual message, e.g. "while attaching image.sif". */
  context?: string;
  cause?: unknown;
}

const errorMap: Map<number, [string, string]> = getSystemErrorMap();

/** A syscall failure, shaped like Node's SystemError. */
export class SystemError extends Error {
  readonly code: string;
  readonly errno: number;
  readonly syscall: string;
  readonly path?: string;
  readonly dest?: string;
  readonly kernelMessages?: string[];

  constructor(init: SystemErrorInit) {
    const errno = init.errno > 0 ? -init.errno : init.errno;
    const [code, description] = errorMap.get(errno) ?? [`Unknown system error ${errno}`, 'unknown error'];
    let message = `${code}: ${description}, ${init.syscall}`;
    if (init.path !== undefined) message += ` '${init.path}'`;
    if (init.dest !== undefined) message += ` -> '${init.dest}'`;
    if (init.kernelMessages && init.kernelMessages.length > 0) message += ` (kernel: ${init.kernelMessages.join('; ')})`;
    if (init.context) message = `${init.context}: ${message}`;
    super(message, init.cause === undefined ? undefined : { cause: init.cause });
    this.code = code;
    this.errno = errno;
    this.syscall = init.syscall;
    if (init.path !== undefined) this.path = init.path;
    if (init.dest !== undefined) this.dest = init.dest;
    if (init.kernelMessages && init.kernelMessages.length > 0) this.kernelMessages = init.kernelMessages;
  }

  override get name(): string {
    return 'SystemError';
  }
}

/** Raised when an operation is aborted through its AbortSignal, as core `fs` does. */
export class AbortError extends Error {
  readonly code = 'ABORT_ERR';
  constructor(message = 'The operation was aborted', options?: { cause?: unknown }) {
    super(message, options);
  }
  override get name(): string {
    return 'AbortError';
  }
}

/** Throws an AbortError if the signal has fired. */
export function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw new AbortError(undefined, { cause: signal.reason });
}

/** Node fs errors (and anything with a string code and numeric errno) as a SystemError with context. */
export function fromNodeError(err: unknown, context?: string): SystemError | unknown {
  const e = err as NodeJS.ErrnoException;
  if (e && typeof e.errno === 'number' && typeof e.syscall === 'string') {
    const init: SystemErrorInit = { errno: e.errno, syscall: e.syscall, cause: err };
    if (e.path !== undefined) init.path = e.path;
    if ((e as { dest?: string }).dest !== undefined) init.dest = (e as { dest?: string }).dest;
    if (context !== undefined) init.context = context;
    return new SystemError(init);
  }
  return err;
}

/** True if `err` or anything on its cause chain carries `code`. Survives any depth of wrapping. */
export function hasErrorCode(err: unknown, code: string): boolean {
  const seen = new Set<unknown>();
  let cur: unknown = err;
  while (cur && typeof cur === 'object' && !seen.has(cur)) {
    seen.add(cur);
    if ((cur as { code?: unknown }).code === code) return true;
    cur = (cur as { cause?: unknown }).cause;
  }
  return false;
}

/** The codes of argument errors, which have Node's shape (TypeError or RangeError), not ImgmountError's. */
export type ArgumentErrorCode = 'ERR_INVALID_ARG_TYPE' | 'ERR_INVALID_ARG_VALUE' | 'ERR_OUT_OF_RANGE';

/**
 * An argument error in Node's shape: a RangeError for ERR_OUT_OF_RANGE, else a TypeError, with
 * `code`. The helpers below write Node's own messages; this one takes a message of ours.
 */
export function argumentError(code: ArgumentErrorCode, message: string, options?: { cause?: unknown }): (TypeError | RangeError) & { code: ArgumentErrorCode } {
  const Ctor = code === 'ERR_OUT_OF_RANGE' ? RangeError : TypeError;
  const err = new Ctor(message, options) as (TypeError | RangeError) & { code: ArgumentErrorCode };
  err.code = code;
  return err;
}

export function invalidArgType(name: string, expected: string, actual: unknown): TypeError {
  return argumentError('ERR_INVALID_ARG_TYPE', `The "${name}" argument must be ${expected}. Received ${describe(actual)}`);
}

export function invalidArgValue(name: string, actual: unknown, reason: string): TypeError {
  return argumentError('ERR_INVALID_ARG_VALUE', `The argument '${name}' ${reason}. Received ${describe(actual)}`);
}

export function outOfRange(name: string, range: string, actual: unknown): RangeError {
  return argumentError('ERR_OUT_OF_RANGE', `The value of "${name}" is out of range. It must be ${range}. Received ${describe(actual)}`);
}

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (v === undefined) return 'undefined';
  if (typeof v === 'string') return `type string ('${v.length > 40 ? v.slice(0, 40) + '...' : v}')`;
  if (typeof v === 'number' || typeof v === 'bigint' || typeof v === 'boolean') return `type ${typeof v} (${String(v)})`;
  if (typeof v === 'function') return 'function';
  return `an instance of ${(v as object).constructor?.name ?? 'Object'}`;
}
