// The loop layer's own pieces that lib/mount uses too (the fused attach + mount): the
// no-free-device error, the test seams of the retry policy and the counters. Not exported from
// the package. Generic helpers live in lib/util.

import { ImgmountError } from '../errors';

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
