// One FUSE mount served by one helper process (a "layer"), and its release.
//
// Two ways to get there:
//  - fd passing (root, our own mount namespace, a helper that understands /dev/fd/N): we open
//    /dev/fuse, mount `fuse.<program>` at the target ourselves through the MountFunc (nosuid,
//    nodev, ro as asked, fd=N), start the helper with that fd and tell it /dev/fd/<n>, close our
//    copy, and confirm it serves by stat()ing the target, racing its exit. No privilege goes to
//    the helper and there is nothing to wait for in mountinfo.
//  - self mount (not root, inside a user namespace, or a libfuse 2 helper such as fuse2fs): the
//    helper mounts by itself (directly as root, or through fusermount3), and we wait for the
//    target to appear in the mountinfo of its mount namespace (wait-mount.ts), racing its exit.
//    Where the kernel mount lacks ro/nosuid/nodev (fuse2fs keeps `ro` to itself), we remount it
//    with them.
// Either way an early exit is ERR_HELPER_FAILED with its (filtered) output, a helper that does
// not serve in time is killed (ERR_HELPER_TIMEOUT), an abort kills it, and a failed attempt
// leaves no mount and no process behind.

import { execFile } from 'node:child_process';
import { closeFd } from '../../io/fd';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { ImgmountError, hasErrorCode } from '../../errors';
import type { MountFunc } from '../../image/driver';
import { abortError, debug } from '../../loop/internal';
import {
  MNT_DETACH,
  MS_BIND,
  MS_NOATIME,
  MS_NODEV,
  MS_NODIRATIME,
  MS_NOEXEC,
  MS_NOSUID,
  MS_RDONLY,
  MS_RELATIME,
  MS_REMOUNT,
  MS_STRICTATIME,
} from '../../mount/flags';
import { mount as mountFs, umount } from '../../mount/mount';
import { findMounts, readMountInfo, type MountInfoEntry } from '../../mount/mountinfo';
import { runHelper } from '../../ns/helper';
import { unmountInNamespace } from '../../ns/mount';
import { openTarget, type NamespaceTarget } from '../../ns/namespace';
import { describeExit, startHelper, type HelperExit, type HelperProcess, type StopTimings } from './helper-process';
import { waitForMount } from './wait-mount';

const openAsync = promisify(fs.open);

/** What the driver asks of one helper. */
export interface Step {
  /** The program (absolute path). */
  program: string;
  /** argv after the program, given the source argument (or null) and the mount point argument. */
  argv: (source: string | null, mountpoint: string) => string[];
  /** A file the helper gets as its fd 3 and is told /proc/self/fd/3 (Apptainer's fd-drift fix). */
  sourceFd?: number;
  /** Written to its stdin (gocryptfs' key). */
  input?: Buffer;
  /** Mount point: a real path in our namespace, or as seen in `namespace`. */
  target: string;
  readOnly: boolean;
  allowOther: boolean;
  /** MS_NOEXEC if the caller asked for it. */
  noexec: boolean;
  /** Start the helper in these namespaces (it then mounts by itself there). */
  namespace?: NamespaceTarget;
  /** Hand it a mounted /dev/fuse fd (root, own namespace, program that can take it). */
  fdPassing: boolean;
  timeoutMs: number;
  logFile?: string;
  setsid?: string | null;
  signal?: AbortSignal;
}

/** A mount and the helper serving it. */
export interface Layer {
  helper: HelperProcess;
  target: string;
  fstype: string;
  how: 'fd' | 'self';
  namespace?: NamespaceTarget;
  readOnly: boolean;
}

export interface ServeContext {
  mountFunc: MountFunc;
  /** fusermount3, for unmounting self-mounted layers without privilege. */
  fusermount: string | null;
  onStart?: (helper: HelperProcess, step: Step) => void;
}

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
    fuseFd = await openAsync('/dev/fuse', fs.constants.O_RDWR);
  } catch (cause) {
    throw new ImgmountError('ERR_FUSE_UNAVAILABLE', `cannot open /dev/fuse: ${(cause as Error).message}`, { cause });
  }
  const fds = step.sourceFd !== undefined ? [step.sourceFd] : [];
  let mounted = false;
  let helper: HelperProcess;
  try {
    const flags = MS_NOSUID | MS_NODEV | (step.readOnly ? MS_RDONLY : 0) | (step.noexec ? MS_NOEXEC : 0);
    const data = [`fd=${fuseFd}`, 'rootmode=40000', `user_id=${euid()}`, `group_id=${egid()}`, 'default_permissions'];
    if (step.allowOther) data.push('allow_other');
    data.push(`subtype=${name}`);
    await ctx.mountFunc(name, step.target, 'fuse', flags, data.join(','));
    mounted = true;
    helper = await startHelper({
      program: step.program,
      args: step.argv(step.sourceFd !== undefined ? '/proc/self/fd/3' : null, `/dev/fd/${3 + fds.length}`),
      fds: [...fds, fuseFd],
      ...(step.input ? { input: step.input } : {}),
      ...(step.logFile ? { logFile: step.logFile } : {}),
      ...(step.signal ? { signal: step.signal } : {}),
    });
  } catch (err) {
    if (mounted) await unmountOwn(step.target).catch((e: unknown) => debug('fuse: undo mount of %s: %s', step.target, (e as Error).message));
    throw err;
  } finally {
    // The helper has its own copy now; ours must go, or the connection would outlive the
    // helper and requests to the mount would hang instead of failing with ENOTCONN.
    await closeFd(fuseFd).catch(() => undefined);
  }
  const layer: Layer = { helper, target: step.target, fstype: `fuse.${name}`, how: 'fd', readOnly: step.readOnly };
  ctx.onStart?.(helper, step);
  // The first request on the mount waits for the helper's FUSE_INIT reply: a stat that returns
  // means it serves; if it dies first, the connection aborts and the stat fails (ENOTCONN).
  const stat = fs.promises.stat(step.target).then(
    () => true,
    (e: unknown) => e,
  );
  const r = await race(stat, helper, step.timeoutMs, step.signal);
  if (r.kind === 'done' && r.value === true && helper.running) return layer;
  let failure: Error;
  if (r.kind === 'timeout') {
    const exit = await killHelper(helper);
    failure = helperTimeout(name, step.target, step.timeoutMs, exit);
  } else if (r.kind === 'aborted') {
    await killHelper(helper);
    failure = abortError(step.signal!);
  } else {
    // It exited, or the stat failed because it is exiting: wait for its exit and output.
    const exit = r.kind === 'exited' ? r.exit : await helper.stop({ graceMs: 1000, termMs: 1000 }).catch(() => undefined);
    const cause = r.kind === 'done' && r.value instanceof Error ? r.value : undefined;
    failure = exit
      ? helperFailed(name, step.target, exit, cause)
      : (cause ?? new ImgmountError('ERR_HELPER_FAILED', `${name} stopped serving ${step.target} right after it started`));
  }
  await unmountOwn(step.target).catch((e: unknown) => debug('fuse: undo mount of %s: %s', step.target, (e as Error).message));
  throw failure;
}

async function serveSelf(step: Step, ctx: ServeContext): Promise<Layer> {
  const name = path.basename(step.program);
  // Mounts already at the target (ours: we may unmount only what the helper added).
  const before = step.namespace ? null : new Set(findMounts(await readMountInfo(), { mountPoint: step.target }).map((e) => e.id));
  const helper = await startHelper({
    program: step.program,
    args: step.argv(step.sourceFd !== undefined ? '/proc/self/fd/3' : null, step.target),
    ...(step.sourceFd !== undefined ? { fds: [step.sourceFd] } : {}),
    ...(step.input ? { input: step.input } : {}),
    ...(step.logFile ? { logFile: step.logFile } : {}),
    ...(step.namespace ? { namespace: step.namespace, setsid: step.setsid ?? null } : {}),
    ...(step.signal ? { signal: step.signal } : {}),
  });
  ctx.onStart?.(helper, step);
  const layer: Layer = {
    helper,
    target: step.target,
    fstype: 'fuse',
    how: 'self',
    readOnly: step.readOnly,
    ...(step.namespace ? { namespace: step.namespace } : {}),
  };
  let seen: MountInfoEntry | undefined;
  let failure: Error;
  try {
    const w = await waitForMount({
      pid: step.namespace ? helper.pid : 'self',
      target: step.target,
      accept: (e) => (e.fstype === 'fuse' || e.fstype.startsWith('fuse.')) && !before?.has(e.id),
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
      seen = w.entry;
      layer.fstype = w.entry.fstype;
      debug('fuse: %s mounted %s in %d ms', name, step.target, w.ms);
      await fixMountFlags(layer, w.entry, step);
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
  // Undo a mount it made before failing (only a new one at the target).
  if (step.namespace) {
    if (seen) await unmountLayer(layer, ctx).catch(() => undefined);
  } else {
    const added = findMounts(await readMountInfo(), { mountPoint: step.target }).filter((e) => !before!.has(e.id) && e.fstype.startsWith('fuse'));
    if (added.length) await unmountLayer(layer, ctx).catch((e: unknown) => debug('fuse: undo mount of %s: %s', step.target, (e as Error).message));
  }
  throw failure;
}

const OPTION_FLAGS: Array<[string, number]> = [
  ['ro', MS_RDONLY],
  ['nosuid', MS_NOSUID],
  ['nodev', MS_NODEV],
  ['noexec', MS_NOEXEC],
  ['noatime', MS_NOATIME],
  ['nodiratime', MS_NODIRATIME],
  ['relatime', MS_RELATIME],
  ['strictatime', MS_STRICTATIME],
];

/**
 * Adds what the helper's own mount lacks (ro when read-only, nosuid, nodev, noexec if asked) by
 * a bind remount, which changes only this mount's flags. Needs privilege over its namespace:
 * root here, or root in the helper's user namespace; otherwise logged and left as it is.
 */
async function fixMountFlags(layer: Layer, entry: MountInfoEntry, step: Step): Promise<void> {
  const have = new Set(entry.mountOptions);
  const want = ['nosuid', 'nodev', ...(step.readOnly ? ['ro'] : []), ...(step.noexec ? ['noexec'] : [])];
  const missing = want.filter((o) => !have.has(o));
  if (missing.length === 0) return;
  let flags = MS_REMOUNT | MS_BIND;
  for (const [opt, f] of OPTION_FLAGS) if (have.has(opt) || want.includes(opt)) flags |= f;
  if (have.has('rw') && step.readOnly) flags |= MS_RDONLY;
  debug('fuse: %s lacks %s: remounting with them', layer.target, missing.join(','));
  if (step.namespace) {
    const opened = await openTarget({ pid: layer.helper.pid });
    try {
      await runHelper({ op: 'mount', args: ['-', layer.target, '-', String(flags), '-'], userns: opened.userns?.fd ?? null, mntns: opened.mntns?.fd ?? null, dest: layer.target });
    } finally {
      await opened.close();
    }
  } else if (euid() === 0) {
    await mountFs(null, layer.target, null, flags);
  } else {
    debug('fuse: cannot remount %s without privilege; the helper enforces %s itself', layer.target, missing.join(','));
  }
}

// ---------------------------------------------------------------------------------------

/** umount2 in our namespace, retrying while busy (a helper above may still be exiting), then detaching. */
export async function unmountOwn(target: string, busyRetries = 6): Promise<void> {
  try {
    await umount(target, 0, { busyRetries });
  } catch (err) {
    if (hasErrorCode(err, 'ERR_NOT_MOUNTED')) return;
    if (hasErrorCode(err, 'EBUSY')) {
      debug('fuse: %s still busy: detaching it', target);
      await umount(target, MNT_DETACH);
      return;
    }
    throw err;
  }
}

const execFileAsync = promisify(execFile);

/** Unmounts a layer where it is: our namespace (umount2, or fusermount3 -u without privilege) or the helper's. */
export async function unmountLayer(layer: Pick<Layer, 'target' | 'namespace' | 'helper'>, ctx: Pick<ServeContext, 'fusermount'>): Promise<void> {
  if (layer.namespace) {
    const where: NamespaceTarget = layer.helper.running ? { pid: layer.helper.pid } : layer.namespace;
    try {
      await unmountInNamespace(where, layer.target);
    } catch (err) {
      if (hasErrorCode(err, 'ERR_NOT_MOUNTED')) return;
      // The namespace is gone (its last process exited): so is the mount.
      if (!layer.helper.running && hasErrorCode(err, 'ERR_NAMESPACE')) return;
      if (hasErrorCode(err, 'EBUSY')) return unmountInNamespace(where, layer.target, MNT_DETACH);
      throw err;
    }
    return;
  }
  if (euid() === 0 || !ctx.fusermount) return unmountOwn(layer.target);
  try {
    await execFileAsync(ctx.fusermount, ['-u', layer.target], { timeout: 10_000 });
  } catch (err) {
    const text = `${(err as { stderr?: string }).stderr ?? ''}`;
    if (/not (found in|mounted)|Invalid argument/.test(text)) return;
    if (/busy/i.test(text)) {
      await execFileAsync(ctx.fusermount, ['-u', '-z', layer.target], { timeout: 10_000 });
      return;
    }
    throw new ImgmountError('ERR_MOUNT_FAILED', `fusermount3 -u ${layer.target} failed: ${text.trim() || (err as Error).message}`, { cause: err });
  }
}

/**
 * Unmounts a layer and stops its helper (bounded escalation). Returns the errors met (empty
 * on success); a helper exiting non-zero after its unmount is one (e.g. fuse2fs failing to
 * write back), its output included.
 */
export async function releaseLayer(layer: Layer, ctx: Pick<ServeContext, 'fusermount'>, timings: StopTimings): Promise<unknown[]> {
  const errors: unknown[] = [];
  await unmountLayer(layer, ctx).catch((e: unknown) => errors.push(e));
  try {
    const exit = await layer.helper.stop(timings);
    if (exit.signal === null && exit.code !== 0 && exit.code !== null)
      errors.push(
        new ImgmountError('ERR_HELPER_FAILED', `${layer.helper.name} serving ${layer.target} exited with status ${exit.code}${exit.output ? `: ${exit.output}` : ''}`, {
          details: { program: layer.helper.name, target: layer.target, code: exit.code, output: exit.output },
        }),
      );
  } catch (e) {
    errors.push(e);
  }
  return errors;
}

