// Bring-up: one FUSE mount served by one helper process (a "layer", layer.ts), from a Step
// (plan.ts). Its release is tear-down.ts.
//
// Two ways to get there:
//  - fd passing (root, a helper that understands /dev/fd/N): we open /dev/fuse, mount
//    `fuse.<program>` ourselves (nosuid, nodev, ro as asked, fd=N) onto the pinned target (or,
//    for another mount namespace, detached), start the helper with that fd and tell it
//    /dev/fd/<n>, close our copy, and confirm it serves by stat()ing the new mount's root,
//    racing its exit. No privilege goes to the helper and there is nothing to wait for in
//    mountinfo.
//  - self mount (a libfuse 2 helper such as fuse2fs, or no root): the helper mounts by itself
//    and we wait for that mount in mountinfo (wait-mount.ts), racing its exit. As root it
//    mounts on a staging directory of our own session, and the finished mount is cloned with
//    ro/nosuid/nodev set before it is attached (bindMount) onto the pinned target or into the
//    other namespace. Without root it mounts through fusermount3 at the target's path.
// Helpers always run from our own filesystem, in our own mount namespace: a mount meant for
// another namespace is served from here and moved there when it works, so no program of that
// namespace's filesystem ever runs.
// Either way an early exit is ERR_HELPER_FAILED with its (filtered) output, a helper that does
// not serve in time is killed (ERR_HELPER_TIMEOUT), an abort kills it, and a failed attempt
// leaves no mount and no process behind.

import { closeFd, openFd } from '../../io/fd';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ImgmountError, hasErrorCode } from '../../errors';
import { abortError } from '../../util/abort';
import { debug } from '../../util/debug';
import { MNT_DETACH, MS_BIND, MS_REMOUNT, perMountFlags } from '../../mount/flags';
import { bindMount } from '../../mount/bind';
import { mount as mountFs, mountDetached, umount } from '../../mount/mount';
import { findMounts, readMountInfo, type MountInfoEntry } from '../../mount/mountinfo';
import { moveMountIntoNamespace } from '../../mount/in-namespace';
import { openMountRoot } from '../../path/pinned';
import { describeExit, startHelper, type HelperExit, type HelperProcess } from './helper-process';
import type { Layer, ServeContext } from './layer';
import { fdPassingMount, type Step } from './plan';
import { kernelMountFunc } from '../kernel';
import { unmountLayer, unmountOwn } from './tear-down';
import { waitForMount } from './wait-mount';

const euid = (): number => process.geteuid?.() ?? -1;
const egid = (): number => process.getegid?.() ?? -1;

/** ERR_HELPER_FAILED for a helper that exited before (or instead of) serving. */
export function helperFailed(name: string, target: string, exit: HelperExit, cause?: unknown): ImgmountError {
  let msg = `${name} exited before serving ${target} (${describeExit(exit)})`;
  msg += exit.output ? `: ${exit.output}` : ' without output';
  if (/fusermount/.test(exit.output)) {
    msg += /not permitted|[Pp]ermission denied/.test(exit.output)
      ? ' (the helper may not mount here: run as root, give a namespace whose user namespace owns the mount namespace, or allow FUSE for this user)'
      : ' (a fusermount error may indicate that the kernel is too old)';
  }
  return new ImgmountError('ERR_HELPER_FAILED', msg, {
    ...(cause !== undefined ? { cause } : {}),
    details: { program: name, target, code: exit.code, signal: exit.signal, output: exit.output },
  });
}

function helperTimeout(name: string, target: string, ms: number, exit: HelperExit | undefined): ImgmountError {
  const out = exit?.output ? `; its output: ${exit.output}` : '';
  return new ImgmountError('ERR_HELPER_TIMEOUT', `${name} did not serve ${target} within ${ms} ms, so it was killed${out}`, {
    details: { program: name, target, timeoutMs: ms, output: exit?.output ?? '' },
  });
}

type Race<T> = { kind: 'done'; value: T } | { kind: 'exited'; exit: HelperExit } | { kind: 'timeout' } | { kind: 'aborted' };

/** Whichever comes first: `work`, the helper's exit, the timeout, the abort. */
function race<T>(work: Promise<T>, helper: HelperProcess, timeoutMs: number, signal?: AbortSignal): Promise<Race<T>> {
  return new Promise((resolve) => {
    let done = false;
    const finish = (r: Race<T>): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      resolve(r);
    };
    const onAbort = (): void => finish({ kind: 'aborted' });
    const timer = setTimeout(() => finish({ kind: 'timeout' }), timeoutMs);
    signal?.addEventListener('abort', onAbort, { once: true });
    if (signal?.aborted) onAbort();
    work.then((value) => finish({ kind: 'done', value }));
    void helper.exited.then((exit) => finish({ kind: 'exited', exit }));
  });
}

/** Ends a helper that must not go on (timeout, abort, failure): SIGKILL, bounded wait. */
async function killHelper(helper: HelperProcess): Promise<HelperExit | undefined> {
  helper.kill('SIGKILL');
  return helper.stop({ graceMs: 0, termMs: 0, killMs: 5000 }).catch(() => undefined);
}

/** Starts the helper for `step` and resolves once it serves the mount. */
export async function serve(step: Step, ctx: ServeContext): Promise<Layer> {
  if (step.signal?.aborted) throw abortError(step.signal);
  return step.fdPassing ? serveWithFd(step, ctx) : serveSelf(step, ctx);
}

async function serveWithFd(step: Step, ctx: ServeContext): Promise<Layer> {
  const name = path.basename(step.program);
  let fuseFd: number;
  try {
    fuseFd = await openFd('/dev/fuse', fs.constants.O_RDWR);
  } catch (cause) {
    throw new ImgmountError('ERR_FUSE_UNAVAILABLE', `cannot open /dev/fuse: ${(cause as Error).message}`, { cause });
  }
  const fds = [...(step.sourceFd !== undefined ? [step.sourceFd] : []), ...(step.extraFds ?? [])];
  let detached: number | undefined;
  let detachedId: number | bigint = 0;
  let attached = false;
  let helper: HelperProcess;
  const undo = async (): Promise<void> => {
    if (detached !== undefined) await closeFd(detached).catch(() => undefined);
    detached = undefined;
    if (attached) await unmountOwn(step.pinned ?? step.target).catch((e: unknown) => debug('fuse: undo mount of %s: %s', step.target, (e as Error).message));
    attached = false;
  };
  try {
    const { flags, data } = fdPassingMount(step, fuseFd, euid(), egid());
    if (step.moveInto) {
      // Nothing attached anywhere until it serves; then it goes to the other namespace.
      ({ fd: detached, mountId: detachedId } = await mountDetached(name, `fuse.${name}`, flags, data));
    } else {
      // Our own mount function mounts on the pinned directory itself; a caller's gets its path.
      if (step.pinned && ctx.mountFunc === kernelMountFunc) await mountFs(name, step.pinned, 'fuse', flags, data);
      else await ctx.mountFunc(name, step.pinned ? step.pinned.procPath : step.target, 'fuse', flags, data);
      attached = true;
    }
    helper = await startHelper({
      program: step.program,
      args: step.argv(step.sourceFd !== undefined ? '/proc/self/fd/3' : null, `/dev/fd/${3 + fds.length}`),
      fds: [...fds, fuseFd],
      ...(ctx.ownerMark ? { ownerMark: ctx.ownerMark } : {}),
      ...(ctx.dieWithOwner ? { dieWithOwner: true } : {}),
      ...(step.input ? { input: step.input } : {}),
      ...(step.logFile ? { logFile: step.logFile } : {}),
      ...(step.anonymousLog ? { anonymousLog: step.anonymousLog } : {}),
      ...(step.signal ? { signal: step.signal } : {}),
    });
  } catch (err) {
    await undo();
    await closeFd(fuseFd).catch(() => undefined);
    throw err;
  }
  // The helper has its own copy now; ours must go, or the connection would outlive the helper
  // and requests to the mount would hang instead of failing with ENOTCONN. It is closed while
  // the helper is recorded: a request that reached the mount before fails once it is closed.
  const fuseClosed = closeFd(fuseFd).catch(() => undefined);
  const layer: Layer = { helper, target: step.target, fstype: `fuse.${name}`, how: 'fd', readOnly: step.readOnly };
  // Recorded (and onHelperStart told, synchronously) from here on.
  const recorded = ctx.onStart?.(helper, step);
  // The first request on the mount waits for the helper's FUSE_INIT reply: a stat of the new
  // mount's root that returns means it serves; if it dies first, the connection aborts and
  // the stat fails (ENOTCONN). It is sent while the helper is being recorded (the record write
  // does not wait for it, nor it for the write): both are waited for before the mount is used.
  const stat = statMountRoot(step, detached).then(
    () => true,
    (e: unknown) => e,
  );
  try {
    await Promise.all([recorded, fuseClosed]);
  } catch (err) {
    await killHelper(helper);
    await fuseClosed;
    await undo();
    throw err;
  }
  const r = await race(stat, helper, step.timeoutMs, step.signal);
  if (r.kind === 'done' && r.value === true && helper.running) {
    try {
      if (detached !== undefined) {
        await moveMountIntoNamespace(step.moveInto!, detached, step.target);
        layer.namespace = step.moveInto!;
        layer.mountId = detachedId;
      } else if (step.pinned) {
        layer.pinned = step.pinned;
      }
      attached = false; // it stays: the layer owns it now
      await undo(); // closes the detached fd (moved: no longer the only reference)
      return layer;
    } catch (err) {
      await killHelper(helper);
      await undo();
      throw err;
    }
  }
  let failure: Error;
  if (r.kind === 'timeout') {
    const exit = await killHelper(helper);
    failure = helperTimeout(name, step.target, step.timeoutMs, exit);
  } else if (r.kind === 'aborted') {
    await killHelper(helper);
    failure = abortError(step.signal!);
  } else if (r.kind === 'done' && r.value instanceof Error && helper.running && !connectionGone(r.value)) {
    // Our own step failed (pinning the new mount's root), not the helper: it would go on
    // serving, so it is stopped, and the error says what really failed.
    await killHelper(helper);
    failure = r.value;
  } else {
    // It exited, or the stat failed because it is exiting: wait for its exit and output.
    const exit = r.kind === 'exited' ? r.exit : await helper.stop({ graceMs: 1000, termMs: 1000 }).catch(() => undefined);
    const cause = r.kind === 'done' && r.value instanceof Error ? r.value : undefined;
    failure = exit
      ? helperFailed(name, step.target, exit, cause)
      : (cause ?? new ImgmountError('ERR_HELPER_FAILED', `${name} stopped serving ${step.target} right after it started`));
  }
  await undo();
  throw failure;
}

/** What a request to a FUSE mount fails with once its helper is gone (or going). */
function connectionGone(err: Error): boolean {
  return hasErrorCode(err, 'ENOTCONN') || hasErrorCode(err, 'ECONNABORTED');
}

/** stat() of a new FUSE mount's root: the detached mount's fd, the mount on the pinned target, or the path. */
async function statMountRoot(step: Step, detached: number | undefined): Promise<void> {
  if (detached !== undefined) {
    await fs.promises.stat(`/proc/self/fd/${detached}`);
    return;
  }
  if (!step.pinned) {
    await fs.promises.stat(step.target);
    return;
  }
  // Opening the mount's root stats it (statx), which is the first request the helper serves.
  const root = await openMountRoot(step.pinned);
  await root.close();
}

async function serveSelf(step: Step, ctx: ServeContext): Promise<Layer> {
  const name = path.basename(step.program);
  // Where the helper itself mounts: our staging directory (root), or the target's path.
  const mountpoint = step.staging ?? step.target;
  // Mounts already there (ours: we may unmount only what the helper added).
  const before = new Set(findMounts(await readMountInfo(), { mountPoint: mountpoint }).map((e) => e.id));
  const helper = await startHelper({
    program: step.program,
    args: step.argv(step.sourceFd !== undefined ? '/proc/self/fd/3' : null, mountpoint),
    fds: [...(step.sourceFd !== undefined ? [step.sourceFd] : []), ...(step.extraFds ?? [])],
    ...(ctx.ownerMark ? { ownerMark: ctx.ownerMark } : {}),
    ...(ctx.dieWithOwner ? { dieWithOwner: true } : {}),
    ...(step.input ? { input: step.input } : {}),
    ...(step.logFile ? { logFile: step.logFile } : {}),
    ...(step.anonymousLog ? { anonymousLog: step.anonymousLog } : {}),
    ...(step.userns ? { userns: step.userns } : {}),
    ...(step.signal ? { signal: step.signal } : {}),
  });
  const layer: Layer = { helper, target: mountpoint, fstype: 'fuse', how: 'self', readOnly: step.readOnly };
  try {
    await ctx.onStart?.(helper, step);
  } catch (err) {
    await killHelper(helper);
    throw err;
  }
  let failure: Error;
  try {
    const w = await waitForMount({
      pid: step.userns ? helper.pid : 'self',
      target: mountpoint,
      accept: (e) => (e.fstype === 'fuse' || e.fstype.startsWith('fuse.')) && !before.has(e.id),
      timeoutMs: step.timeoutMs,
      until: helper.exited,
      ...(step.signal ? { signal: step.signal } : {}),
    }).catch((err: unknown) => {
      // The helper's /proc entry went away before we could watch its namespace: it exited.
      if (!helper.running || hasErrorCode(err, 'ENOENT') || hasErrorCode(err, 'EINVAL') || hasErrorCode(err, 'ESRCH')) {
        if ((err as Error).name === 'AbortError') throw err;
        return { status: 'stopped' as const, ms: 0 };
      }
      throw err;
    });
    if (w.status === 'mounted') {
      layer.fstype = w.entry.fstype;
      debug('fuse: %s mounted %s in %d ms', name, mountpoint, w.ms);
      if (step.staging) await placeStaged(step, layer);
      else await fixMountFlags(layer, w.entry, step);
      return layer;
    }
    if (w.status === 'timeout') {
      const exit = await killHelper(helper);
      failure = helperTimeout(name, step.target, step.timeoutMs, exit);
    } else {
      const exit = await helper.stop({ graceMs: 1000, termMs: 1000 }).catch(() => undefined);
      failure = exit ? helperFailed(name, step.target, exit) : new ImgmountError('ERR_HELPER_FAILED', `${name} exited before serving ${step.target}`);
    }
  } catch (err) {
    await killHelper(helper);
    failure = err as Error;
  }
  // Undo a mount it made before failing (only a new one where it mounted), and a placed one.
  if (layer.pinned || layer.namespace) await unmountLayer(layer, ctx).catch(() => undefined);
  const added = findMounts(await readMountInfo(), { mountPoint: mountpoint }).filter((e) => !before.has(e.id) && e.fstype.startsWith('fuse'));
  if (added.length) await unmountLayer({ target: mountpoint, helper }, ctx).catch((e: unknown) => debug('fuse: undo mount of %s: %s', mountpoint, (e as Error).message));
  throw failure;
}

/**
 * A helper mounted by itself on our staging directory: its mount is cloned with the flags it
 * must have (ro as asked, nosuid, nodev) set before the clone is attached anywhere, the clone
 * goes onto the pinned target or into the other namespace, and the staging mount is detached.
 * The helper keeps serving the clone (the FUSE connection belongs to the superblock).
 */
async function placeStaged(step: Step, layer: Layer): Promise<void> {
  await bindMount(step.staging!, step.moveInto ? step.target : step.pinned!, {
    readOnly: step.readOnly,
    nosuid: true,
    nodev: true,
    noexec: step.noexec,
    recursive: false,
    ...(step.moveInto ? { namespace: step.moveInto } : {}),
  });
  layer.target = step.target;
  if (step.moveInto) layer.namespace = step.moveInto;
  else layer.pinned = step.pinned!;
  await umount(step.staging!, MNT_DETACH);
}

/**
 * What a self-mounted helper's mount lacks of what it must have (nosuid, nodev, ro when
 * read-only, noexec if asked), given its options as mountinfo lists them, and the flags of the
 * bind remount that adds them while keeping the others it has (a bind remount sets exactly the
 * per-mount flags it is given).
 */
export function missingMountFlags(mountOptions: readonly string[], step: Pick<Step, 'readOnly' | 'noexec'>): { missing: string[]; flags: number } {
  const have = new Set(mountOptions);
  const want = ['nosuid', 'nodev', ...(step.readOnly ? ['ro'] : []), ...(step.noexec ? ['noexec'] : [])];
  return { missing: want.filter((o) => !have.has(o)), flags: MS_REMOUNT | MS_BIND | perMountFlags([...have, ...want]) };
}

/**
 * Adds what the helper's own mount lacks by a bind remount, which changes only this mount's
 * flags. Needs root (as root, helpers mount on a staging directory and placeStaged sets the
 * flags instead); otherwise logged and left as it is (the helper was asked for nosuid,nodev
 * itself).
 */
async function fixMountFlags(layer: Layer, entry: MountInfoEntry, step: Step): Promise<void> {
  const { missing, flags } = missingMountFlags(entry.mountOptions, step);
  if (missing.length === 0) return;
  debug('fuse: %s lacks %s: remounting with them', layer.target, missing.join(','));
  if (euid() === 0 && !step.userns) {
    await mountFs(null, layer.target, null, flags);
  } else {
    debug('fuse: cannot remount %s without privilege; the helper enforces %s itself', layer.target, missing.join(','));
  }
}
