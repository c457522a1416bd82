// Releasing FUSE mounts from their MountRecord, in any process (`imgmount umount TARGET`, a
// daemon after a restart), and the session directories that hold internal mount points.
//
// Order: mounts below the target (nestedMounts), the target, then each internal mount (plain,
// then cipher for gocryptfs), each unmount retried while busy (the helper above it is still
// exiting) and finally detached; then every recorded helper still running with its recorded
// start time and executable is stopped (wait, SIGTERM, SIGKILL; never a reused pid, never a
// helper recorded without its executable); then the session directory (only its own files and
// empty directories: never recursing into a mount) and the record itself. A record is checked
// (lib/drivers/mount-record.ts) before any of this: one that fails is ERR_MOUNT_RECORD_INVALID
// and nothing in it is acted on.

import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { ImgmountError, hasErrorCode, throwIfAborted } from '../../errors';
import { debug } from '../../util/debug';
import { unmountInNamespace } from '../../mount/in-namespace';
import { targetName } from '../../path/pinned';
import { checkedRecordFile, currentMountNamespace, findMountRecord, processStartTime, removeMountRecord, removeSessionDir, validateMountRecord, type HelperRecord, type MountRecord } from '../mount-record';
import { isRecordedProcess, stopRecordedProcess, type StopTimings } from './helper-process';
import { unmountOwn } from './tear-down';

/** What the FUSE driver records beyond the common MountRecord. */
export interface FuseMountRecord extends MountRecord {
  /** Mount namespace of the internal mounts, where it differs from the target's. */
  internalMntns?: string;
  /** The helpers were meant to outlive the process that started them. */
  persist?: boolean;
  /** A process of the target's mount namespace (the one named when mounting), to enter it again to unmount. */
  enter?: { pid: number; startTime: string };
}

/** The mount namespace of `pid`, as its inode number; null if it is gone. */
export async function mntnsOf(pid: number): Promise<string | null> {
  try {
    const link = await fsp.readlink(`/proc/${pid}/ns/mnt`);
    return /\[(\d+)\]/.exec(link)?.[1] ?? link;
  } catch {
    return null;
  }
}

export interface ReleaseOptions {
  stop?: StopTimings;
  signal?: AbortSignal;
  /** Told each step once it is done ("unmounted /x", "stopped squashfuse_ll (pid 42)", ...). */
  report?: (done: string) => void;
  /** Leave the target itself mounted (something else holds it now: cleanup() checked). */
  skipTarget?: boolean;
}

/**
 * Releases everything a mount record names (see the file comment) and removes the record.
 * Works for records of this process and of others (the CLI's `imgmount umount`), for the FUSE
 * driver's records and for records of roots built on FUSE mounts. Rejects with the errors met
 * (the rest of the release still runs); the record stays if anything remains mounted.
 */
export async function releaseMountRecord(record: MountRecord, options: ReleaseOptions = {}): Promise<void> {
  // Records from findMountRecord are checked already; one handed in directly is checked here.
  const r = (await validateMountRecord(record, `of ${String((record as Partial<MountRecord> | null)?.target)}`)) as FuseMountRecord;
  const own = await currentMountNamespace();
  const errors: unknown[] = [];
  const step = async (what: string, fn: () => Promise<unknown>): Promise<void> => {
    try {
      await fn();
      options.report?.(what);
    } catch (err) {
      debug('fuse: release %s: %s failed: %s', r.target, what, (err as Error).message);
      errors.push(err);
    }
  };
  throwIfAborted(options.signal);
  // A process in the target's namespace, for unmounting there: a live helper of the record.
  let nsPid: number | undefined;
  if (r.mntns !== own) {
    const e = r.enter;
    if (e && (await processStartTime(e.pid)) === e.startTime && (await mntnsOf(e.pid)) === r.mntns) nsPid = e.pid;
    for (const h of nsPid === undefined ? r.helpers : []) {
      if ((await isRecordedProcess(h)) && (await mntnsOf(h.pid)) === r.mntns) nsPid = h.pid;
    }
  }
  const unmountTarget = async (target: string): Promise<void> => {
    if (r.mntns === own) return unmountOwn(target);
    if (nsPid === undefined) {
      // Nothing of the record runs in that namespace any more: a self-mounted helper that got
      // SIGTERM unmounted itself, and a namespace whose processes are gone took its mounts.
      debug('fuse: release %s: no process left in mount namespace %s', target, r.mntns);
      return;
    }
    try {
      await unmountInNamespace({ pid: nsPid }, target);
    } catch (err) {
      if (!hasErrorCode(err, 'ERR_NOT_MOUNTED')) throw err;
    }
  };
  for (const m of r.nestedMounts ?? []) await step(`unmount ${m}`, () => unmountTarget(m));
  if (!options.skipTarget) await step(`unmount ${r.target}`, () => unmountTarget(r.target));
  const internalNs = r.internalMntns ?? r.mntns;
  for (const m of r.internalMounts) {
    if (internalNs !== own) {
      errors.push(new ImgmountError('ERR_NAMESPACE', `internal mount ${m} of ${r.target} is in mount namespace ${internalNs}; release it from there`));
      continue;
    }
    await step(`unmount ${m}`, () => unmountOwn(m, 10));
  }
  for (const h of [...r.helpers].reverse()) await step(`stop ${h.program} (pid ${h.pid})`, () => stopRecordedHelpers([h], options.stop ? { stop: options.stop } : {}));
  for (const dir of [r.sessionDir, ...(r.moreSessionDirs ?? [])]) if (dir) await step(`remove ${dir}`, () => removeSessionDir(dir));
  if (errors.length === 0) await step('remove the record', () => removeMountRecord(r.target, r.mntns));
  if (errors.length === 1) throw errors[0];
  if (errors.length > 1) throw new AggregateError(errors, `releasing ${r.target}: ${errors.length} step(s) failed`);
}

/**
 * Removes the record of (mntns, target) synchronously, for the process-exit path (where
 * nothing asynchronous runs): only in a records directory this process has checked.
 */
export function removeMountRecordSync(target: string, mntns: string): void {
  const file = checkedRecordFile(target, mntns);
  try {
    if (file !== null) fs.unlinkSync(file);
  } catch {
    // gone meanwhile
  }
}

/**
 * Stops recorded helpers (of this or another process), last started first: each one still
 * running with its recorded start time and executable gets the bounded wait / SIGTERM / SIGKILL
 * escalation.
 * Call it after unmounting what they serve. Rejects with the failures (the rest still run).
 */
export async function stopRecordedHelpers(helpers: readonly HelperRecord[], options: ReleaseOptions = {}): Promise<void> {
  const errors: unknown[] = [];
  for (const h of [...helpers].reverse()) {
    throwIfAborted(options.signal);
    try {
      const how = await stopRecordedProcess(h, options.stop);
      debug('fuse: %s (pid %d) %s', h.program, h.pid, how);
    } catch (err) {
      errors.push(err);
    }
  }
  if (errors.length === 1) throw errors[0];
  if (errors.length > 1) throw new AggregateError(errors, `${errors.length} helper(s) could not be stopped`);
}

/** Finds the record of `target` (a path in this mount namespace) and releases it; false if there is none. */
export async function releaseFuseMount(target: string, options: ReleaseOptions = {}): Promise<boolean> {
  const real = await targetName(target).catch(() => path.resolve(target));
  const record = (await findMountRecord(real)) ?? (real !== target ? await findMountRecord(target) : undefined);
  if (!record) return false;
  await releaseMountRecord(record, options);
  return true;
}
