// The loop context (util-linux's struct loopdev_cxt): what one attach asks for, resolved once
// (the options after defaults, the backing file, lo_flags and lo_file_name), and the pure
// decisions made over it: the native spec of an attempt, what a failed attempt leads to (the
// fallback rule), and whether what the kernel bound is what was asked. The commit step that
// acts on them is ./setup.ts.

import { ImgmountError, SystemError, invalidArgType, outOfRange } from '../errors';
import type { NativeLoopAttachSpec, NativeLoopInfo } from '../native/binding';
import {
  BACKOFF_START_MS,
  DEFAULT_BUSY_RETRIES,
  DEFAULT_EAGAIN_RETRIES,
  DEFAULT_MAX_LOOP_DEVICES,
  DEFAULT_SHARED_LOCK_TIMEOUT_MS,
  LOOP_API_ENV,
  LO_FLAGS_AUTOCLEAR,
  LO_FLAGS_DIRECT_IO,
  LO_FLAGS_PARTSCAN,
  LO_FLAGS_READ_ONLY,
  LO_NAME_SIZE,
  MAX_BACKOFF_MS,
  type LoopApi,
} from './constants';
import { expectationOf, statusMismatches } from './expectation';
import { noFreeLoopDevice } from './internal';
import { signalOf } from '../util/abort';
import { bool, byteCount, choice, envChoice } from '../util/args';
import { isSystemError } from '../util/system-error';

const LOOP_APIS = ['auto', 'configure', 'legacy'] as const;

/** What to attach: an open fd, a path, or anything holding both (such as an Image). */
export type LoopSource = number | string | { readonly fd: number; readonly path: string };

export interface AttachLoopOptions {
  /** Byte offset of the partition in the file (default 0). */
  offset?: number | bigint;
  /** Bytes visible through the device; 0 (default) means up to the end of the file. */
  sizeLimit?: number | bigint;
  /** Read-only device (default true). */
  readOnly?: boolean;
  /** Detach automatically once the last user (mount or fd) goes away (default true). */
  autoclear?: boolean;
  /** Direct I/O against the backing file (default false; the kernel may refuse silently). */
  directIo?: boolean;
  /** Scan for partitions (default false). */
  partscan?: boolean;
  /** Logical block size (512..4096, a power of two); the kernel's default when omitted. */
  blockSize?: number;
  /** Reuse a device already bound to the same file, offset, size and read-only flag. */
  shared?: boolean;
  /** Device numbers at or above this are refused with ERR_LOOP_NO_FREE_DEVICE (default 256). */
  maxDevices?: number;
  /** lo_file_name, shown by `losetup -a` (default: the image's path; at most 63 bytes kept). */
  fileName?: string;
  /** Force the ioctls: 'configure' or 'legacy'; default IMGMOUNT_LOOP_API or 'auto'. */
  api?: LoopApi;
  /** Attempts when another attacher takes the free device first (default 64). */
  busyRetries?: number;
  /** Retries of a step the kernel answers with EAGAIN (LOOP_CONFIGURE, LOOP_SET_FD, LOOP_SET_STATUS64; default 8, with back-off). */
  eagainRetries?: number;
  /** How long a shared attach waits for another one in progress (default 30 s). */
  sharedLockTimeoutMs?: number;
  signal?: AbortSignal;
}

/** Options after defaults, as the rest of the loop layer uses them. */
export interface ResolvedLoopOptions {
  offset: bigint;
  sizeLimit: bigint;
  readOnly: boolean;
  autoclear: boolean;
  directIo: boolean;
  partscan: boolean;
  /** 0: the kernel's default. */
  blockSize: number;
  shared: boolean;
  maxDevices: number;
  fileName: string | undefined;
  api: LoopApi;
  busyRetries: number;
  eagainRetries: number;
  sharedLockTimeoutMs: number;
  signal: AbortSignal | undefined;
}

function count(name: string, v: unknown, dflt: number, max = Number.MAX_SAFE_INTEGER): number {
  if (v === undefined) return dflt;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > max) throw outOfRange(name, `an integer >= 0 and <= ${max}`, v);
  return v;
}

export function resolveLoopOptions(o: AttachLoopOptions = {}): ResolvedLoopOptions {
  if (typeof o !== 'object' || o === null) throw invalidArgType('options', 'of type object', o);
  const blockSize = count('options.blockSize', o.blockSize, 0, 4096);
  if (blockSize !== 0 && (blockSize < 512 || (blockSize & (blockSize - 1)) !== 0))
    throw outOfRange('options.blockSize', 'a power of two from 512 to 4096', blockSize);
  if (o.fileName !== undefined && typeof o.fileName !== 'string') throw invalidArgType('options.fileName', 'of type string', o.fileName);
  return {
    offset: byteCount('options.offset', o.offset, 0n),
    sizeLimit: byteCount('options.sizeLimit', o.sizeLimit, 0n),
    readOnly: bool('options.readOnly', o.readOnly, true),
    autoclear: bool('options.autoclear', o.autoclear, true),
    directIo: bool('options.directIo', o.directIo, false),
    partscan: bool('options.partscan', o.partscan, false),
    blockSize,
    shared: bool('options.shared', o.shared, false),
    maxDevices: count('options.maxDevices', o.maxDevices, DEFAULT_MAX_LOOP_DEVICES, 1 << 20),
    fileName: o.fileName,
    api: choice('options.api', o.api, LOOP_APIS) ?? envChoice(LOOP_API_ENV, LOOP_APIS, 'auto'),
    busyRetries: count('options.busyRetries', o.busyRetries, DEFAULT_BUSY_RETRIES),
    eagainRetries: count('options.eagainRetries', o.eagainRetries, DEFAULT_EAGAIN_RETRIES),
    sharedLockTimeoutMs: count('options.sharedLockTimeoutMs', o.sharedLockTimeoutMs, DEFAULT_SHARED_LOCK_TIMEOUT_MS),
    signal: signalOf(o.signal),
  };
}

export function loFlags(o: ResolvedLoopOptions): number {
  return (
    (o.readOnly ? LO_FLAGS_READ_ONLY : 0) |
    (o.autoclear ? LO_FLAGS_AUTOCLEAR : 0) |
    (o.partscan ? LO_FLAGS_PARTSCAN : 0) |
    (o.directIo ? LO_FLAGS_DIRECT_IO : 0)
  );
}

/** lo_file_name keeps 63 bytes; keep the end of a long path (the file name is what helps). */
export function loFileName(name: string): string {
  const buf = Buffer.from(name);
  if (buf.length < LO_NAME_SIZE) return name;
  let tail = buf.subarray(buf.length - (LO_NAME_SIZE - 1));
  while (tail.length && (tail[0]! & 0xc0) === 0x80) tail = tail.subarray(1); // no split UTF-8
  return tail.toString();
}

/** Validates a LoopSource without opening anything. */
export function checkSource(source: unknown): asserts source is LoopSource {
  if (typeof source === 'number') {
    if (!Number.isInteger(source) || source < 0) throw outOfRange('source', 'a file descriptor (integer >= 0)', source);
    return;
  }
  if (typeof source === 'string') {
    if (source.length === 0 || source.includes('\0')) throw invalidArgType('source', 'a non-empty path without NUL', source);
    return;
  }
  if (typeof source === 'object' && source !== null && typeof (source as { fd?: unknown }).fd === 'number' &&
      typeof (source as { path?: unknown }).path === 'string')
    return;
  throw invalidArgType('source', 'a file descriptor, a path or an object with fd and path', source);
}

// ---------------------------------------------------------------------------------------
// The context.

/** The backing file of an attach. */
export interface LoopBacking {
  /** Its fd, or -1: each native attach opens `path` itself (and closes it once bound). */
  fd: number;
  /** What lo_file_name defaults to and messages name (/proc/self/fd/N for a bare fd). */
  path: string;
  /** We opened `fd`, so we close it. */
  owned: boolean;
}

/** Everything one attach needs, resolved once. */
export interface LoopContext {
  readonly o: ResolvedLoopOptions;
  readonly backing: LoopBacking;
  /** lo_flags. */
  readonly flags: number;
  /** lo_file_name as the kernel keeps it. */
  readonly fileName: string;
}

export function loopContext(backing: LoopBacking, o: ResolvedLoopOptions): LoopContext {
  return { o, backing, flags: loFlags(o), fileName: loFileName(o.fileName ?? backing.path) };
}

/** One try at binding a device. */
export interface Attempt {
  /** The ioctls: LOOP_CONFIGURE, or LOOP_SET_FD (+ LOOP_SET_STATUS64 afterwards). */
  method: 'configure' | 'legacy';
  /** A device number chosen by a test hook instead of LOOP_CTL_GET_FREE. */
  device: number | undefined;
  /** 0 for the first try. */
  attempt: number;
  /** The errno a test injects in place of the binding ioctl (0: none). */
  injectErrno: number;
}

/** The native spec of an attempt: every argument explicit (the addon picks no default). */
export function attachSpec(ctx: LoopContext, a: Attempt): NativeLoopAttachSpec {
  return {
    imageFd: ctx.backing.fd,
    imagePath: ctx.backing.fd < 0 ? ctx.backing.path : '',
    device: a.device ?? -1,
    openReadOnly: ctx.o.readOnly,
    method: a.method,
    offset: ctx.o.offset,
    sizeLimit: ctx.o.sizeLimit,
    flags: ctx.flags,
    blockSize: ctx.o.blockSize,
    fileName: ctx.fileName,
    injectErrno: a.injectErrno,
  };
}

// ---------------------------------------------------------------------------------------
// The fallback rule: what a failed attempt leads to.

/** The steps whose EBUSY means "someone else bound this device first". */
const BIND_STEPS = /^ioctl\(LOOP_(CONFIGURE|SET_FD)\)$/;
export const UDEV_RETRIES = 16;
export const UDEV_STEP_MS = 25;

/** Failed attempts so far, by reason. */
export interface Tries {
  busy: number;
  eagain: number;
  udev: number;
}

/** How long to wait before the next attempt: a fixed time, or a step of exponential back-off. */
export type Wait = { fixedMs: number } | { backoffStep: number; startMs: number; maxMs: number };

export type AfterFailure =
  /** Try again (after `wait`, if any). */
  | { action: 'retry'; reason: 'busy' | 'eagain' | 'udev'; wait: Wait | null }
  /** LOOP_CONFIGURE may be unknown to this kernel: probe once, then retry with the legacy ioctls or fail with the error. */
  | { action: 'probe' }
  /** Give up with `error`. */
  | { action: 'fail'; error: Error }
  /** Not a loop step's failure that retrying fixes: the caller's to judge (a fused mount step's, say). */
  | { action: 'other' };

/**
 * What the failure `err` of an attempt leads to, counting it in `tries`: bounded retries when
 * another attacher took the free device (EBUSY) or the kernel said EAGAIN, the probe when
 * LOOP_CONFIGURE looks missing (util-linux's EINVAL/ENOTTY/ENOSYS rule, only with api 'auto'),
 * waiting for udev's device node, ERR_LOOP_NO_FREE_DEVICE when none is free.
 */
export function afterFailure(err: unknown, o: Pick<ResolvedLoopOptions, 'api' | 'busyRetries' | 'eagainRetries'>, tries: Tries): AfterFailure {
  if (isSystemError(err, 'EBUSY', BIND_STEPS)) {
    if (++tries.busy > o.busyRetries)
      return { action: 'fail', error: noFreeLoopDevice(`${tries.busy - 1} retries lost the race for one (${err.message})`, { cause: err }) };
    return { action: 'retry', reason: 'busy', wait: tries.busy > 2 ? { backoffStep: tries.busy - 3, startMs: 1, maxMs: 50 } : null };
  }
  if (isSystemError(err, 'EAGAIN', BIND_STEPS)) {
    if (++tries.eagain > o.eagainRetries) return { action: 'fail', error: gaveUp(err, tries.eagain - 1) };
    return { action: 'retry', reason: 'eagain', wait: { backoffStep: tries.eagain - 1, startMs: BACKOFF_START_MS, maxMs: MAX_BACKOFF_MS } };
  }
  if (o.api === 'auto' && isSystemError(err, undefined, 'ioctl(LOOP_CONFIGURE)') && ['EINVAL', 'ENOTTY', 'ENOSYS'].includes(err.code))
    return { action: 'probe' };
  if (isSystemError(err, undefined, 'open') && /^\/dev\/loop\d+$/.test(err.path ?? '') && ['ENOENT', 'ENXIO'].includes(err.code)) {
    // The kernel made the device but udev has not made (or has just removed) its node.
    if (++tries.udev > UDEV_RETRIES) return { action: 'fail', error: err };
    return { action: 'retry', reason: 'udev', wait: { fixedMs: UDEV_STEP_MS } };
  }
  if (isSystemError(err, undefined, 'ioctl(LOOP_CTL_GET_FREE)')) return { action: 'fail', error: noFreeLoopDevice(err.message, { cause: err }) };
  return { action: 'other' };
}

/** The last EAGAIN of a step, saying how many retries were made before giving up (code EAGAIN kept). */
export function gaveUp(err: SystemError, retries: number): SystemError {
  return new SystemError({
    errno: err.errno,
    syscall: err.syscall,
    ...(err.path !== undefined ? { path: err.path } : {}),
    context: `loop attach gave up after ${retries} ${retries === 1 ? 'retry' : 'retries'} (eagainRetries)`,
    cause: err,
  });
}

// ---------------------------------------------------------------------------------------
// The check of what the kernel bound.

/** A device an attempt bound, as the check needs it. */
export interface BoundDevice {
  number: number;
  path: string;
  /** LOOP_GET_STATUS64 after binding (null: none was read). */
  status: NativeLoopInfo | null;
  /** fstat of the backing file the call bound. */
  imageDevice: number | bigint;
  imageInode: number | bigint;
}

/** Why the bound device must be undone (undefined: it is what was asked): the device limit, then the verification. */
export function boundProblem(ctx: LoopContext, r: BoundDevice): ImgmountError | undefined {
  const o = ctx.o;
  if (r.number >= o.maxDevices)
    return noFreeLoopDevice(`none below the maximum of ${o.maxDevices} (next free is ${r.path})`, {
      details: { maxDevices: o.maxDevices, next: r.number },
    });
  const bad = r.status ? statusMismatches(r.status, expectationOf(o, r.imageDevice, r.imageInode)) : ['no status'];
  return bad.length ? verifyError(r.path, bad) : undefined;
}

function verifyError(device: string, mismatches: string[]): ImgmountError {
  return new ImgmountError('ERR_LOOP_VERIFY', `loop device ${device} does not match what was asked: ${mismatches.join('; ')}`, {
    path: device,
    details: { mismatches },
  });
}
