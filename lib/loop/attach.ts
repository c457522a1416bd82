// attachLoop(): bind an image (or a byte range of it) to a loop device.
//
// The kernel work is one native call per attempt (GET_FREE -> open -> LOOP_CONFIGURE ->
// GET_STATUS64 in one worker hop). The policy is here: which ioctls (LOOP_CONFIGURE, or the
// legacy LOOP_SET_FD + LOOP_SET_STATUS64 where the kernel lacks it, memoised and overridable
// with IMGMOUNT_LOOP_API), bounded retries when another attacher takes the free device first
// (EBUSY) or the kernel answers EAGAIN, the device-count limit, verification of the result
// and undoing it when anything after the binding fails or the caller aborts.

import * as fs from 'node:fs';
import { closeFd } from '../io/fd';
import { promisify } from 'node:util';
import { ImgmountError, SystemError, invalidArgType, outOfRange, throwIfAborted } from '../errors';
import { native, type NativeLoopInfo } from '../native/binding';
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
import { abortError, signalOf, sleep } from '../util/abort';
import { bool, byteCount, choice, envChoice } from '../util/args';
import { backoffMs } from '../util/backoff';
import { toBig, toNumberOrBig } from '../util/bigint';
import { debug } from '../util/debug';
import { api } from '../util/stack';
import { isSystemError } from '../util/system-error';
import { counters, noFreeLoopDevice, testHooks } from './internal';
import { attachShared } from './share';
import { loopNumber } from './status';

const openAsync = promisify(fs.open);

const EBADF = 9;
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

// ---------------------------------------------------------------------------------------
// Which ioctls: LOOP_CONFIGURE unless the kernel lacks it (probed once, on the first
// EINVAL/ENOTTY/ENOSYS from it, util-linux's rule) or the caller/env forces a method.

let configureMemo: Promise<boolean> | undefined;

/** Whether this kernel has LOOP_CONFIGURE (a harmless probe, memoised per process). */
export function loopConfigureSupported(): Promise<boolean> {
  configureMemo ??= native((b) => b.loopProbeConfigure()).then(
    (errno) => {
      const ok = errno === EBADF;
      debug('LOOP_CONFIGURE probe: errno %d -> %s', errno, ok ? 'supported' : 'missing');
      return ok;
    },
    (err) => {
      configureMemo = undefined; // no loop-control now; maybe later
      throw err;
    },
  );
  return configureMemo;
}

/** The method an attach uses now: forced, or 'configure' unless the probe said no. */
export async function loopMethod(api: LoopApi): Promise<'configure' | 'legacy'> {
  if (api === 'configure' || api === 'legacy') return api;
  if (configureMemo && !(await configureMemo)) return 'legacy';
  return 'configure';
}

function isConfigureMissing(err: unknown, o: ResolvedLoopOptions): boolean {
  return (
    o.api === 'auto' &&
    isSystemError(err, undefined, 'ioctl(LOOP_CONFIGURE)') &&
    ['EINVAL', 'ENOTTY', 'ENOSYS'].includes((err as SystemError).code)
  );
}

// ---------------------------------------------------------------------------------------
// The attempt loop shared by attachLoop() and the fused attach+mount of lib/mount.

/** The steps whose EBUSY means "someone else bound this device first". */
const BIND_STEPS = /^ioctl\(LOOP_(CONFIGURE|SET_FD)\)$/;
const UDEV_RETRIES = 16;
const UDEV_STEP_MS = 25;

export interface AttemptContext {
  method: 'configure' | 'legacy';
  /** A device number chosen by a test hook instead of LOOP_CTL_GET_FREE. */
  device: number | undefined;
  attempt: number;
}

/**
 * Runs `attempt` until it succeeds or fails for a reason retrying cannot fix. Loop-step
 * failures are classified here; anything else `attempt` throws (say, a mount step of a fused
 * call, which has already released its device) is passed to `onOtherError`, which rethrows
 * or returns true to try again.
 */
export async function withAttachRetries<T>(
  o: ResolvedLoopOptions,
  attempt: (ctx: AttemptContext) => Promise<T>,
  onOtherError: (err: unknown) => Promise<boolean> = async (err) => {
    throw err;
  },
): Promise<T> {
  let busy = 0;
  let eagain = 0;
  let udev = 0;
  for (let n = 0; ; n++) {
    throwIfAborted(o.signal);
    const ctx: AttemptContext = { method: await loopMethod(o.api), device: testHooks.pickDevice?.(n), attempt: n };
    try {
      return await attempt(ctx);
    } catch (err) {
      if (isSystemError(err, 'EBUSY', BIND_STEPS)) {
        if (++busy > o.busyRetries)
          throw noFreeLoopDevice(`${busy - 1} retries lost the race for one (${err.message})`, { cause: err });
        counters.busyRetries++;
        debug('loop attach: %s busy, retry %d', err.path, busy);
        if (busy > 2) await sleep(backoffMs(busy - 3, 1, 50), o.signal);
        continue;
      }
      if (isSystemError(err, 'EAGAIN', BIND_STEPS)) {
        if (++eagain > o.eagainRetries) throw gaveUp(err, eagain - 1);
        counters.eagainRetries++;
        debug('loop attach: EAGAIN, back-off %d', eagain);
        await sleep(backoffMs(eagain - 1, BACKOFF_START_MS, MAX_BACKOFF_MS), o.signal);
        continue;
      }
      if (isConfigureMissing(err, o)) {
        if (!(await loopConfigureSupported())) continue; // memoised: next attempts use the legacy ioctls
        throw err;
      }
      if (isSystemError(err, undefined, 'open') && /^\/dev\/loop\d+$/.test((err as SystemError).path ?? '') &&
          ['ENOENT', 'ENXIO'].includes((err as SystemError).code)) {
        // The kernel made the device but udev has not made (or has just removed) its node.
        if (++udev > UDEV_RETRIES) throw err;
        await sleep(UDEV_STEP_MS, o.signal);
        continue;
      }
      if (isSystemError(err, undefined, 'ioctl(LOOP_CTL_GET_FREE)'))
        throw noFreeLoopDevice((err as Error).message, { cause: err });
      if (await onOtherError(err)) continue;
      throw err;
    }
  }
}

/** The last EAGAIN of a step, saying how many retries were made before giving up (code EAGAIN kept). */
function gaveUp(err: SystemError, retries: number): SystemError {
  return new SystemError({
    errno: err.errno,
    syscall: err.syscall,
    ...(err.path !== undefined ? { path: err.path } : {}),
    context: `loop attach gave up after ${retries} ${retries === 1 ? 'retry' : 'retries'} (eagainRetries)`,
    cause: err,
  });
}

/** The errno a test injects in place of the binding ioctl of this attempt (inert otherwise). */
export function injectedBindErrno(method: 'configure' | 'legacy', attempt: number): { injectErrno: number } | Record<string, never> {
  const errno = testHooks.injectErrno?.(method === 'configure' ? 'configure' : 'setFd', attempt);
  return errno ? { injectErrno: errno } : {};
}

// ---------------------------------------------------------------------------------------
// Verification of what the kernel bound against what was asked.

export interface LoopExpectation {
  imageDevice: number | bigint;
  imageInode: number | bigint;
  offset: bigint;
  sizeLimit: bigint;
  readOnly: boolean;
  autoclear: boolean;
  partscan: boolean;
}

export function expectationOf(o: ResolvedLoopOptions, imageDevice: number | bigint, imageInode: number | bigint): LoopExpectation {
  return { imageDevice, imageInode, offset: o.offset, sizeLimit: o.sizeLimit, readOnly: o.readOnly, autoclear: o.autoclear, partscan: o.partscan };
}

/** What differs between LOOP_GET_STATUS64 and the expectation (empty: all good). */
export function statusMismatches(s: NativeLoopInfo, e: LoopExpectation): string[] {
  const out: string[] = [];
  if (toBig(s.device) !== toBig(e.imageDevice) || toBig(s.inode) !== toBig(e.imageInode))
    out.push(`backing file is device ${s.device} inode ${s.inode}, not the image's ${e.imageDevice}/${e.imageInode}`);
  if (toBig(s.offset) !== e.offset) out.push(`offset is ${s.offset}, not ${e.offset}`);
  if (toBig(s.sizeLimit) !== e.sizeLimit) out.push(`size limit is ${s.sizeLimit}, not ${e.sizeLimit}`);
  const ro = (s.flags & LO_FLAGS_READ_ONLY) !== 0;
  if (ro !== e.readOnly)
    out.push(ro ? 'device is read-only although read-write was asked (is the image opened read-only?)' : 'device is writable although read-only was asked');
  if (((s.flags & LO_FLAGS_AUTOCLEAR) !== 0) !== e.autoclear) out.push(`autoclear is ${!e.autoclear}, not ${e.autoclear}`);
  if (e.partscan && (s.flags & LO_FLAGS_PARTSCAN) === 0) out.push('partition scanning was not enabled');
  return out;
}

export function verifyError(device: string, mismatches: string[]): ImgmountError {
  counters.verifyFailures++;
  return new ImgmountError('ERR_LOOP_VERIFY', `loop device ${device} does not match what was asked: ${mismatches.join('; ')}`, {
    path: device,
    details: { mismatches },
  });
}

// ---------------------------------------------------------------------------------------
// The handle.

export interface LoopDeviceInit {
  fd: number;
  number: number;
  path: string;
  status: NativeLoopInfo;
  method: 'configure' | 'legacy' | 'shared';
  /** This handle bound the device (false: it reuses one another attach made). */
  owner: boolean;
  backingFile: string;
  imageFd?: number;
}

export interface CloseLoopOptions {
  /**
   * Detach the device (LOOP_CLR_FD; lazily, when it is still mounted or open elsewhere).
   * Default true for a device this handle bound. false just drops this handle's fd, leaving
   * the device bound (with autoclear it then goes away with its last user).
   */
  detach?: boolean;
}

/** A bound loop device. close() (or `await using`) releases it; both are idempotent. */
export class LoopDevice implements AsyncDisposable {
  /** '/dev/loopN'. */
  readonly path: string;
  readonly number: number;
  readonly offset: number | bigint;
  readonly sizeLimit: number | bigint;
  readonly readOnly: boolean;
  readonly autoclear: boolean;
  readonly directIo: boolean;
  /** Which ioctls bound it, or 'shared' when this handle reuses a device bound earlier. */
  readonly method: 'configure' | 'legacy' | 'shared';
  /** The image path given (what lo_file_name and losetup show). */
  readonly backingFile: string;
  /** LOOP_GET_STATUS64 as verified after attaching. */
  readonly status: Readonly<NativeLoopInfo>;

  #fd: number;
  readonly #owner: boolean;
  readonly #imageFd: number | undefined;
  #closing: Promise<void> | undefined;

  /** @internal */
  constructor(init: LoopDeviceInit) {
    this.#fd = init.fd;
    this.#owner = init.owner;
    this.#imageFd = init.imageFd;
    this.path = init.path;
    this.number = init.number;
    this.status = Object.freeze({ ...init.status });
    this.offset = init.status.offset;
    this.sizeLimit = init.status.sizeLimit;
    this.readOnly = (init.status.flags & LO_FLAGS_READ_ONLY) !== 0;
    this.autoclear = (init.status.flags & LO_FLAGS_AUTOCLEAR) !== 0;
    this.directIo = (init.status.flags & LO_FLAGS_DIRECT_IO) !== 0;
    this.method = init.method;
    this.backingFile = init.backingFile;
  }

  /** Whether this handle bound the device (and so detaches it on close). */
  get owner(): boolean {
    return this.#owner;
  }

  get closed(): boolean {
    return this.#closing !== undefined;
  }

  /** The open /dev/loopN fd (O_CLOEXEC); throws ERR_LOOP_CLOSED after close(). */
  get fd(): number {
    if (this.#closing) throw new ImgmountError('ERR_LOOP_CLOSED', `loop device ${this.path} handle is closed`, { path: this.path });
    return this.#fd;
  }

  close(options: CloseLoopOptions = {}): Promise<void> {
    this.#closing ??= api(this.close, () => this.#close(this.#owner && (options.detach ?? true)));
    return this.#closing;
  }

  async #close(clear: boolean): Promise<void> {
    const fd = this.#fd;
    this.#fd = -1;
    try {
      await native((b) => b.loopDetach(fd, clear, this.path));
      if (clear) counters.detached++;
      debug('loop %s: closed (%s)', this.path, clear ? 'detached' : 'left bound');
    } catch (err) {
      // ENXIO: nothing is bound any more (someone else detached it): the goal is reached.
      if (!isSystemError(err, 'ENXIO')) throw err;
    } finally {
      if (this.#imageFd !== undefined) await closeFd(this.#imageFd).catch(() => undefined);
    }
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  toJSON(): Record<string, unknown> {
    return {
      path: this.path,
      number: this.number,
      offset: String(this.offset),
      sizeLimit: String(this.sizeLimit),
      readOnly: this.readOnly,
      autoclear: this.autoclear,
      method: this.method,
      backingFile: this.backingFile,
    };
  }
}

// ---------------------------------------------------------------------------------------

export interface OpenedSource {
  fd: number;
  path: string;
  /** We opened it, so we close it. */
  owned: boolean;
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

export async function openSource(source: LoopSource, readOnly: boolean): Promise<OpenedSource> {
  if (typeof source === 'number') return { fd: source, path: `/proc/self/fd/${source}`, owned: false };
  if (typeof source === 'string') {
    const fd = await openAsync(source, readOnly ? fs.constants.O_RDONLY : fs.constants.O_RDWR);
    return { fd, path: source, owned: true };
  }
  return { fd: source.fd, path: source.path, owned: false };
}

/** A fresh device for `src` (never reuses one). The device is verified; failures undo it. */
export async function attachNew(src: OpenedSource, o: ResolvedLoopOptions): Promise<LoopDeviceInit> {
  const flags = loFlags(o);
  const fileName = loFileName(o.fileName ?? src.path);
  return withAttachRetries(o, async ({ method, device, attempt }) => {
    const r = await native((b) =>
      b.loopAttach({
        imageFd: src.fd,
        device,
        openReadOnly: o.readOnly,
        method,
        offset: o.offset,
        sizeLimit: o.sizeLimit,
        flags,
        blockSize: o.blockSize,
        fileName,
        ...injectedBindErrno(method, attempt),
      }),
    );
    const undo = (): Promise<void> => native((b) => b.loopDetach(r.fd, true, r.path)).catch(() => undefined);
    let status = r.status;
    try {
      if (method === 'legacy') {
        counters.legacyAttaches++;
        await setStatusWithBackoff(r.fd, r.path, { offset: o.offset, sizeLimit: o.sizeLimit, flags, fileName }, o, attempt);
        status = await native((b) => b.loopGetStatus(r.fd));
      }
      if (r.number >= o.maxDevices)
        throw noFreeLoopDevice(`none below the maximum of ${o.maxDevices} (next free is ${r.path})`, {
          details: { maxDevices: o.maxDevices, next: r.number },
        });
      const bad = statusMismatches(status!, expectationOf(o, r.imageDevice, r.imageInode));
      if (bad.length) throw verifyError(r.path, bad);
    } catch (err) {
      await undo();
      throw err;
    }
    counters.attached++;
    debug('loop %s: attached %s offset=%s size=%s via %s', r.path, src.path, o.offset, o.sizeLimit, method);
    return { fd: r.fd, number: r.number, path: r.path, status: status!, method, owner: true, backingFile: src.path };
  });
}

/** LOOP_SET_STATUS64 of the legacy method, retried with back-off on EAGAIN. */
async function setStatusWithBackoff(
  fd: number,
  path: string,
  info: { offset: bigint; sizeLimit: bigint; flags: number; fileName: string },
  o: ResolvedLoopOptions,
  outerAttempt: number,
): Promise<void> {
  for (let n = 0; ; n++) {
    try {
      const injected = testHooks.injectErrno?.('setStatus', outerAttempt * 1000 + n);
      if (injected) throw new SystemError({ errno: injected, syscall: 'ioctl(LOOP_SET_STATUS64)', path });
      await native((b) => b.loopSetStatus(fd, { ...info, offset: toNumberOrBig(info.offset), sizeLimit: toNumberOrBig(info.sizeLimit) }, path));
      return;
    } catch (err) {
      if (!isSystemError(err, 'EAGAIN')) throw err;
      // eagainRetries retries after the first call, as for the binding ioctl.
      if (n >= o.eagainRetries) throw gaveUp(err, n);
      counters.eagainRetries++;
      debug('loop %s: LOOP_SET_STATUS64 EAGAIN, back-off %d', path, n + 1);
      await sleep(backoffMs(n, BACKOFF_START_MS, MAX_BACKOFF_MS), o.signal);
    }
  }
}

/**
 * Attaches `source` to a loop device and returns its handle.
 *
 * A path is opened here (read-only unless `readOnly: false`) and closed with the handle; an
 * fd or an `{ fd, path }` object (an Image) stays the caller's. If `signal` fires while the
 * kernel is already binding, the device is detached again before the AbortError is thrown.
 */
export function attachLoop(source: LoopSource, options: AttachLoopOptions = {}): Promise<LoopDevice> {
  return api(attachLoop, () => attachLoopImpl(source, options));
}

async function attachLoopImpl(source: LoopSource, options: AttachLoopOptions = {}): Promise<LoopDevice> {
  checkSource(source);
  const o = resolveLoopOptions(options);
  throwIfAborted(o.signal);
  const src = await openSource(source, o.readOnly);
  let init: LoopDeviceInit | undefined;
  try {
    init = o.shared ? await attachShared(src, o) : await attachNew(src, o);
    if (o.signal?.aborted) {
      await native((b) => b.loopDetach(init!.fd, init!.owner, init!.path));
      throw abortError(o.signal);
    }
  } catch (err) {
    if (src.owned) await closeFd(src.fd).catch(() => undefined);
    throw err;
  }
  return new LoopDevice(src.owned ? { ...init, imageFd: src.fd } : init);
}

/**
 * Detaches a loop device by path or number, as `losetup -d` does: LOOP_CLR_FD, which the
 * kernel defers until the last user goes while the device is still mounted or open.
 * A device that is not bound fails with a SystemError ENXIO.
 */
export function detachLoop(device: number | string, options: { signal?: AbortSignal } = {}): Promise<void> {
  return api(detachLoop, () => detachLoopImpl(device, signalOf(options.signal)));
}

async function detachLoopImpl(device: number | string, signal: AbortSignal | undefined): Promise<void> {
  const n = loopNumber(device);
  const path = `/dev/loop${n}`;
  throwIfAborted(signal);
  const { fd } = await native((b) => b.loopOpen(path, true));
  if (signal?.aborted) {
    // Opened, not detached: close it and leave the device as it was.
    await native((b) => b.loopDetach(fd, false, path)).catch(() => undefined);
    throwIfAborted(signal);
  }
  await native((b) => b.loopDetach(fd, true, path));
  counters.detached++;
}
