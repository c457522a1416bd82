// The loop commit step (util-linux's loopcxt_setup_device): binds a device for one
// LoopContext (./context.ts) and owns the fallback rule and the cleanup.
//
// One native call per attempt (GET_FREE -> open -> LOOP_CONFIGURE -> GET_STATUS64 in one
// worker hop). LOOP_CONFIGURE unless the kernel lacks it (probed once on the first
// EINVAL/ENOTTY/ENOSYS, memoised; IMGMOUNT_LOOP_API or the api option forces a method), else
// the legacy LOOP_SET_FD + LOOP_SET_STATUS64; bounded retries on EBUSY and EAGAIN; the device
// limit and the verification of what was bound, undone when either fails; a shared device
// reused under the cross-process lock (./share.ts). A caller's use of the device (lib/mount's
// mount) rides in the binding hop while LOOP_CONFIGURE binds, and runs right after the binding
// otherwise; the device is released when the use fails.

import * as fs from 'node:fs';
import { constants } from 'node:os';
import { closeFd, openFd } from '../io/fd';
import { SystemError, throwIfAborted } from '../errors';
import { native, type NativeLoopAttachSpec } from '../native/binding';
import { BACKOFF_START_MS, MAX_BACKOFF_MS, type LoopApi } from './constants';
import {
  afterFailure,
  attachSpec,
  boundProblem,
  gaveUp,
  loopContext,
  type Attempt,
  type BoundDevice,
  type LoopBacking,
  type LoopContext,
  type LoopSource,
  type ResolvedLoopOptions,
  type Tries,
  type Wait,
} from './context';
import { LoopDevice, type LoopDeviceInit } from './device';
import { counters, testHooks } from './internal';
import { abortError, sleep } from '../util/abort';
import { backoffMs } from '../util/backoff';
import { toNumberOrBig } from '../util/bigint';
import { debug } from '../util/debug';
import { isSystemError } from '../util/system-error';
import { attachShared } from './share';

const { EBADF } = constants.errno;

// ---------------------------------------------------------------------------------------
// Which ioctls: LOOP_CONFIGURE unless the kernel lacks it or the caller/env forces a method.

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

// ---------------------------------------------------------------------------------------
// The commit.

/** A use of the device committed with it (lib/mount's mount). */
export interface LoopUse<M> {
  /**
   * Binds with `spec` (always LOOP_CONFIGURE) and uses the device in the same native call,
   * which releases the device itself when the use fails and closes the loop fd once used.
   */
  fused(spec: NativeLoopAttachSpec): Promise<{ bound: BoundDevice; use: M }>;
  /** A failure of the fused call that is not a loop step's (the device is released already): true to try again, else throw. */
  retry(err: unknown): Promise<boolean>;
  /** Uses a device bound on its own (the legacy ioctls, a shared device); the device is released when this fails. */
  separate(dev: LoopDevice): Promise<M>;
  /** Undoes a use: its device failed the check, or its fd could not be dropped afterwards. */
  undo(use: M): Promise<void>;
  /**
   * A use that can only ride in the binding call: where the device would be bound on its own
   * (the probe found LOOP_CONFIGURE missing), this error is thrown instead, nothing bound.
   */
  onlyFused?: () => Error;
}

/**
 * Binds (or, with `shared`, reuses) a device for `source` and returns its handle; with `use`,
 * uses it too and returns what the use made (the device then stays bound only as long as
 * that use holds it: autoclear). A path is opened here and held by the handle, except for a
 * fused commit, whose native call opens it itself. If `signal` fires once a device is bound
 * on its own, the device is released before the AbortError is thrown.
 */
export function setupLoop(source: LoopSource, o: ResolvedLoopOptions): Promise<LoopDevice>;
export function setupLoop<M>(source: LoopSource, o: ResolvedLoopOptions, use: LoopUse<M>): Promise<M>;
export async function setupLoop<M>(source: LoopSource, o: ResolvedLoopOptions, use?: LoopUse<M>): Promise<LoopDevice | M> {
  const fusable = use !== undefined && !o.shared && (await loopMethod(o.api)) === 'configure';
  const backing: LoopBacking = fusable && typeof source === 'string' ? { fd: -1, path: source, owned: false } : await openBacking(source, o.readOnly);
  const ctx = loopContext(backing, o);
  let bound: Bound<M>;
  try {
    bound = o.shared ? { device: await attachShared(ctx, () => bindDevice(ctx)) } : await bindNew(ctx, use);
    if ('device' in bound && o.signal?.aborted) {
      const d = bound.device;
      await native((b) => b.loopDetach(d.fd, d.owner, d.path));
      throw abortError(o.signal);
    }
  } catch (err) {
    if (backing.owned) await closeFd(backing.fd).catch(() => undefined);
    throw err;
  }
  if ('used' in bound) return bound.used;
  const dev = new LoopDevice(backing.owned ? { ...bound.device, imageFd: backing.fd } : bound.device);
  if (!use) return dev;
  let used: M;
  try {
    used = await use.separate(dev);
  } catch (err) {
    // Not used: released now.
    await dev.close();
    throw err;
  }
  // Used: the device stays while the use holds it and is auto-cleared afterwards (the
  // autoclear flag was verified; a reused shared device stays its first owner's), so only
  // our fd goes. Should even that fail, the use is undone too.
  try {
    await dev.close({ detach: false });
  } catch (err) {
    await use.undo(used);
    throw err;
  }
  return used;
}

type Bound<M> = { device: LoopDeviceInit } | { used: M };

async function openBacking(source: LoopSource, readOnly: boolean): Promise<LoopBacking> {
  if (typeof source === 'number') return { fd: source, path: `/proc/self/fd/${source}`, owned: false };
  if (typeof source === 'string') {
    const fd = await openFd(source, readOnly ? fs.constants.O_RDONLY : fs.constants.O_RDWR);
    return { fd, path: source, owned: true };
  }
  return { fd: source.fd, path: source.path, owned: false };
}

/** A fresh device on its own (what a shared attach binds when it finds none to reuse). */
async function bindDevice(ctx: LoopContext): Promise<LoopDeviceInit> {
  const bound = await bindNew<never>(ctx, undefined);
  if (!('device' in bound)) throw new Error('unreachable: a bind without a use yields a device');
  return bound.device;
}

/**
 * A fresh device (never a reused one), checked; any failure undoes it. While LOOP_CONFIGURE
 * binds, `use` rides in the same native call; an attempt with the legacy ioctls (forced, or
 * once the probe found LOOP_CONFIGURE missing) binds the device on its own.
 */
async function bindNew<M>(ctx: LoopContext, use: LoopUse<M> | undefined): Promise<Bound<M>> {
  let fusedTry = false;
  const got = await withRetries<{ fused: { bound: BoundDevice; use: M } } | { alone: { bound: BoundDevice; init: LoopDeviceInit } }>(
    ctx,
    async (a) => {
      fusedTry = use !== undefined && a.method === 'configure';
      if (use?.onlyFused && !fusedTry) throw use.onlyFused();
      return fusedTry ? { fused: await use!.fused(attachSpec(ctx, a)) } : { alone: await bindAlone(ctx, a) };
    },
    async (err) => (fusedTry ? use!.retry(err) : false),
  );
  if ('fused' in got) {
    // The call closed the loop fd: undoing the use auto-clears the device.
    await check(ctx, got.fused.bound, () => use!.undo(got.fused.use));
    counters.attached++;
    debug('loop %s: attached %s offset=%s size=%s and used in the same call', got.fused.bound.path, ctx.backing.path, ctx.o.offset, ctx.o.sizeLimit);
    return { used: got.fused.use };
  }
  const d = got.alone;
  await check(ctx, d.bound, () => native((b) => b.loopDetach(d.init.fd, true, d.init.path)).catch(() => undefined));
  counters.attached++;
  debug('loop %s: attached %s offset=%s size=%s via %s', d.init.path, ctx.backing.path, ctx.o.offset, ctx.o.sizeLimit, d.init.method);
  return { device: d.init };
}

/** The device limit and the verification; `undo` when either fails. */
async function check(ctx: LoopContext, bound: BoundDevice, undo: () => Promise<void>): Promise<void> {
  const problem = boundProblem(ctx, bound);
  if (!problem) return;
  if (problem.code === 'ERR_LOOP_VERIFY') counters.verifyFailures++;
  await undo();
  throw problem;
}

/** One attempt binding a device on its own; for the legacy method LOOP_SET_STATUS64 follows, and its failure undoes the binding. */
async function bindAlone(ctx: LoopContext, a: Attempt): Promise<{ bound: BoundDevice; init: LoopDeviceInit }> {
  const r = await native((b) => b.loopAttach(attachSpec(ctx, a)));
  let status = r.status;
  if (a.method === 'legacy') {
    try {
      counters.legacyAttaches++;
      await setStatusWithBackoff(ctx, r.fd, r.path, a.attempt);
      status = await native((b) => b.loopGetStatus(r.fd));
    } catch (err) {
      await native((b) => b.loopDetach(r.fd, true, r.path)).catch(() => undefined);
      throw err;
    }
  }
  return {
    bound: { ...r, status },
    init: { fd: r.fd, number: r.number, path: r.path, status: status!, method: a.method, owner: true, backingFile: ctx.backing.path },
  };
}

/**
 * Runs `step` until it succeeds or fails for a reason retrying cannot fix (the fallback rule:
 * ./context.ts afterFailure). A failure that is not a loop step's goes to `onOther`, which
 * rethrows or returns true to try again.
 */
async function withRetries<T>(ctx: LoopContext, step: (a: Attempt) => Promise<T>, onOther: (err: unknown) => Promise<boolean>): Promise<T> {
  const tries: Tries = { busy: 0, eagain: 0, udev: 0 };
  for (let n = 0; ; n++) {
    throwIfAborted(ctx.o.signal);
    const method = await loopMethod(ctx.o.api);
    const device = testHooks.pickDevice?.(n);
    const injectErrno = testHooks.injectErrno?.(method === 'configure' ? 'configure' : 'setFd', n) ?? 0;
    try {
      return await step({ method, device, attempt: n, injectErrno });
    } catch (err) {
      const next = afterFailure(err, ctx.o, tries);
      switch (next.action) {
        case 'retry':
          if (next.reason === 'busy') {
            counters.busyRetries++;
            debug('loop attach: %s busy, retry %d', (err as SystemError).path, tries.busy);
          } else if (next.reason === 'eagain') {
            counters.eagainRetries++;
            debug('loop attach: EAGAIN, back-off %d', tries.eagain);
          }
          if (next.wait) await sleep(waitMs(next.wait), ctx.o.signal);
          continue;
        case 'probe':
          if (!(await loopConfigureSupported())) continue; // memoised: next attempts use the legacy ioctls
          throw err;
        case 'fail':
          throw next.error;
        case 'other':
          if (await onOther(err)) continue;
          throw err;
      }
    }
  }
}

function waitMs(w: Wait): number {
  return 'fixedMs' in w ? w.fixedMs : backoffMs(w.backoffStep, w.startMs, w.maxMs);
}

/** LOOP_SET_STATUS64 of the legacy method, retried with back-off on EAGAIN. */
async function setStatusWithBackoff(ctx: LoopContext, fd: number, path: string, outerAttempt: number): Promise<void> {
  const info = { offset: toNumberOrBig(ctx.o.offset), sizeLimit: toNumberOrBig(ctx.o.sizeLimit), flags: ctx.flags, fileName: ctx.fileName };
  for (let n = 0; ; n++) {
    try {
      const injected = testHooks.injectErrno?.('setStatus', outerAttempt * 1000 + n);
      if (injected) throw new SystemError({ errno: injected, syscall: 'ioctl(LOOP_SET_STATUS64)', path });
      await native((b) => b.loopSetStatus(fd, info, path));
      return;
    } catch (err) {
      if (!isSystemError(err, 'EAGAIN')) throw err;
      // eagainRetries retries after the first call, as for the binding ioctl.
      if (n >= ctx.o.eagainRetries) throw gaveUp(err, n);
      counters.eagainRetries++;
      debug('loop %s: LOOP_SET_STATUS64 EAGAIN, back-off %d', path, n + 1);
      await sleep(backoffMs(n, BACKOFF_START_MS, MAX_BACKOFF_MS), ctx.o.signal);
    }
  }
}
