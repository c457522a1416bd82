// Pieces the loop, mount and namespace layers share. Not exported from the package.

import { debuglog } from 'node:util';
import { AbortError, ImgmountError, SystemError, argumentError, invalidArgType, invalidArgValue, outOfRange } from '../errors';

export const debug = debuglog('imgmount');

/**
 * ERR_LOOP_NO_FREE_DEVICE, saying what to do about it: raise the limit, or share one device
 * between the read-only mounts of one image.
 */
export function noFreeLoopDevice(why: string, extra: { cause?: unknown; details?: Record<string, unknown> } = {}): ImgmountError {
  return new ImgmountError(
    'ERR_LOOP_NO_FREE_DEVICE',
    `no free loop device: ${why}. Raise the limit (the loop option maxDevices, default 256; the kernel's own with ` +
      '`modprobe loop max_loop=N` or the max_loop= boot parameter), release mounts no longer used, or let read-only ' +
      'mounts of one image share a device (shareLoopDevice: true for root() and mountImage(), loop.shared for mountPartition())',
    extra,
  );
}

/** A number when it fits in 2^53 exactly, else a bigint (the addon's convention). */
export function toNumberOrBig(v: bigint): number | bigint {
  return v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
}

export function toBig(v: number | bigint): bigint {
  return typeof v === 'bigint' ? v : BigInt(v);
}

/** Validates a byte count or offset: a non-negative integer below 2^64. */
export function byteCount(name: string, v: unknown, dflt: bigint): bigint {
  if (v === undefined) return dflt;
  if (typeof v === 'number') {
    if (!Number.isSafeInteger(v) || v < 0) throw outOfRange(name, 'a non-negative safe integer', v);
    return BigInt(v);
  }
  if (typeof v === 'bigint') {
    if (v < 0n || v >= 1n << 64n) throw outOfRange(name, '>= 0 and < 2^64', v);
    return v;
  }
  throw invalidArgType(name, 'of type number or bigint', v);
}

export function bool(name: string, v: unknown, dflt: boolean): boolean {
  if (v === undefined) return dflt;
  if (typeof v !== 'boolean') throw invalidArgType(name, 'of type boolean', v);
  return v;
}

export function signalOf(v: unknown): AbortSignal | undefined {
  if (v === undefined) return undefined;
  if (!(v instanceof AbortSignal)) throw invalidArgType('options.signal', 'an instance of AbortSignal', v);
  return v;
}

export function abortError(signal: AbortSignal): AbortError {
  return new AbortError(undefined, { cause: signal.reason });
}

/** Sleeps, or rejects with our AbortError as soon as the signal fires. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(abortError(signal));
    const onAbort = (): void => {
      clearTimeout(t);
      reject(abortError(signal!));
    };
    const t = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/** Exponential back-off step with a little jitter (attempt 0 is the first retry). */
export function backoffMs(attempt: number, startMs: number, maxMs: number): number {
  const base = Math.min(maxMs, startMs * 2 ** Math.min(attempt, 20));
  return base / 2 + Math.random() * (base / 2);
}

/**
 * Captures the caller's stack now (synchronously, at the public API boundary) and returns a
 * function that gives it to an error made later, after any number of awaits or in a native
 * callback, so that stacks point at the caller's code as with core `fs`.
 */
// eslint-disable-next-line @typescript-eslint/no-unsafe-function-type
export function callerStack(fn: Function): <E>(e: E) => E {
  const site: { stack?: string } = {};
  Error.captureStackTrace(site, fn);
  return (e) => {
    if (e instanceof Error && site.stack) e.stack = `${e.name}: ${e.message}${site.stack.slice(site.stack.indexOf('\n'))}`;
    return e;
  };
}

/** Runs a public async operation with its errors carrying the caller's stack. */
// eslint-disable-next-line @typescript-eslint/no-unsafe-function-type
export async function api<T>(fn: Function, body: () => Promise<T>): Promise<T> {
  const restack = callerStack(fn);
  try {
    return await body();
  } catch (err) {
    throw restack(err);
  }
}

export function isSystemError(err: unknown, code?: string, syscall?: string | RegExp): err is SystemError {
  if (!(err instanceof SystemError)) return false;
  if (code !== undefined && err.code !== code) return false;
  if (syscall !== undefined) return typeof syscall === 'string' ? err.syscall === syscall : syscall.test(err.syscall);
  return true;
}

/** Reads an override such as IMGMOUNT_LOOP_API; an unknown value is an error, not a silent default. */
export function envChoice<T extends string>(name: string, allowed: readonly T[], dflt: T): T {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return dflt;
  if ((allowed as readonly string[]).includes(raw)) return raw as T;
  throw argumentError('ERR_INVALID_ARG_VALUE', `${name}=${raw} is not one of ${allowed.join(', ')}`);
}

export function choice<T extends string>(name: string, v: unknown, allowed: readonly T[]): T | undefined {
  if (v === undefined) return undefined;
  if (typeof v !== 'string' || !(allowed as readonly string[]).includes(v))
    throw invalidArgValue(name, v, `must be one of ${allowed.map((a) => `'${a}'`).join(', ')}`);
  return v as T;
}

/** Runs `fn` exclusively per key within this process (callers with other keys run in parallel). */
export class KeyedMutex {
  readonly #tails = new Map<string, Promise<void>>();

  async run<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.#tails.get(key) ?? Promise.resolve();
    let release!: () => void;
    const mine = new Promise<void>((r) => (release = r));
    const tail = prev.then(() => mine);
    this.#tails.set(key, tail);
    await prev;
    try {
      return await fn();
    } finally {
      release();
      if (this.#tails.get(key) === tail) this.#tails.delete(key);
    }
  }
}

/**
 * Seams for tests of the retry policy. A kernel EBUSY is produced for real by steering an
 * attempt onto a device that is already bound (`pickDevice`); EAGAIN, which current kernels
 * no longer return, is injected (`injectErrno`) at each step that retries on it: the binding
 * ioctl (LOOP_CONFIGURE, or LOOP_SET_FD of the legacy pair; the addon makes the real
 * GET_FREE and open, then fails in place of the ioctl) and LOOP_SET_STATUS64.
 */
export type InjectStep = 'configure' | 'setFd' | 'setStatus';
export interface LoopTestHooks {
  /** Device number to use for attempt N instead of LOOP_CTL_GET_FREE (undefined: ask the kernel). */
  pickDevice?: (attempt: number) => number | undefined;
  /**
   * An errno to fail a step with. `call` is the attach attempt for 'configure' and 'setFd'
   * (the fused attach + mount of lib/mount included); for 'setStatus', call number N of
   * attach attempt A is A * 1000 + N.
   */
  injectErrno?: (step: InjectStep, call: number) => number | undefined;
}
export const testHooks: LoopTestHooks = {};

/** Counters of what the loop layer did in this process (like sharp's counters()). */
export interface LoopCounters {
  attached: number;
  reused: number;
  detached: number;
  legacyAttaches: number;
  busyRetries: number;
  eagainRetries: number;
  verifyFailures: number;
}
export const counters: LoopCounters = {
  attached: 0,
  reused: 0,
  detached: 0,
  legacyAttaches: 0,
  busyRetries: 0,
  eagainRetries: 0,
  verifyFailures: 0,
};
