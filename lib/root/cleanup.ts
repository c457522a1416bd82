// cleanup(): sweeping what a process killed at any moment left behind. Records are written
// before the first mount they describe and removed after the last release (see root(),
// mountImage() and the FUSE driver), so whatever a dead owner left is named by a record:
// cleanup() releases it (nested mounts first, the target, internal layers — lazily where busy
// — the helpers, the session directories) and removes the record.
//
// Safe beside live daemons: a record whose owner still runs (same pid, same start time) is
// never touched; one without an owner (the CLI's persistent mounts) only with `all`. A target
// whose mount is not the kind the record expects (something else was mounted there since) is
// left mounted. Helpers a dead owner started but had not recorded yet are found by the mark in
// their environment. Idempotent: a second run finds nothing to do.

import * as fsp from 'node:fs/promises';
import { throwIfAborted } from '../errors';
import { debug } from '../util/debug';
import {
  currentMountNamespace,
  listMountRecords,
  ownerAlive,
  processExe,
  processStartTime,
  removeStaleRecordTemps,
  stateKey,
  type MountRecord,
  type RecordOwner,
} from '../drivers/mount-record';
import { OWNER_MARK, stopRecordedProcess, type StopTimings } from '../drivers/fuse/helper-process';
import { releaseMountRecord, type FuseMountRecord } from '../drivers/fuse/release';
import { findMounts, readMountInfo } from '../mount/mountinfo';
import { pathContains } from '../image/authorize';

export interface CleanupOptions {
  /** Also sweep records that name no owner (mounts meant to outlive their maker: `imgmount mount`). Live owners' records are never touched. */
  all?: boolean;
  /** Say what would be done, do nothing. */
  dryRun?: boolean;
  /** Stopping helpers (default: 1 s, SIGTERM, 1 s, SIGKILL). */
  stop?: StopTimings;
  signal?: AbortSignal;
}

export interface CleanupEntry {
  target: string;
  mntns: string;
  owner: RecordOwner | null;
  /** Done (or, with dryRun, to do), in order. */
  actions: string[];
  /** What failed (the record then stays, for a later run). */
  errors: string[];
}

export interface CleanupReport {
  dryRun: boolean;
  swept: CleanupEntry[];
  /** Records left alone, and why (a live owner, no owner without `all`). */
  kept: Array<{ target: string; mntns: string; why: string }>;
  /** Records refused as invalid (nothing in them is acted on). */
  invalid: Array<{ file: string; reason: string }>;
  /** Helpers of dead owners that no record named, stopped. */
  orphans: Array<{ pid: number; program: string; outcome: string }>;
  /** Temporary record files of dead writers, removed. */
  temps: string[];
}

/** The plan of releasing `r`, step by step (for dry runs and reports). */
function plan(r: FuseMountRecord, skipTarget: boolean): string[] {
  return [
    ...(r.nestedMounts ?? []).map((m) => `unmount ${m}`),
    ...(skipTarget ? [] : [`unmount ${r.target}`]),
    ...r.internalMounts.map((m) => `unmount ${m}`),
    ...[...r.helpers].reverse().map((h) => `stop ${h.program} (pid ${h.pid})`),
    ...[r.sessionDir, ...(r.moreSessionDirs ?? [])].filter((d): d is string => Boolean(d)).map((d) => `remove ${d}`),
    'remove the record',
  ];
}

/**
 * Whether something other than what the record expects holds its target now (then the target
 * is left mounted). Only checked where the record says what to expect and the namespace is
 * readable (ours, or through its recorded process).
 */
async function targetTaken(r: FuseMountRecord): Promise<string | null> {
  if (!r.expectFstype) return null;
  const own = await currentMountNamespace();
  let pid: number | 'self' | undefined = r.mntns === own ? 'self' : undefined;
  if (pid === undefined && r.enter && (await processStartTime(r.enter.pid)) === r.enter.startTime) pid = r.enter.pid;
  if (pid === undefined) return null;
  const top = findMounts(await readMountInfo(pid), { mountPoint: r.target }).pop();
  if (!top) return null;
  const expected = r.expectFstype.split(',');
  return expected.includes(top.fstype) ? null : `${r.target} holds a ${top.fstype} mount now, not the ${expected.join(' or ')} the record describes`;
}

/** Records that live inside another record's session directories go after it (their layers). */
function order(records: MountRecord[]): MountRecord[] {
  const dirs = records.flatMap((r) => [r.sessionDir, ...(r.moreSessionDirs ?? [])].filter((d): d is string => Boolean(d)));
  const inner = (r: MountRecord): boolean => dirs.some((d) => d !== r.sessionDir && pathContains(d, r.target));
  return [...records.filter((r) => !inner(r)), ...records.filter(inner)];
}

/** Processes carrying a helper's owner mark of this state directory whose owner is gone. */
async function orphanHelpers(): Promise<Array<{ pid: number; program: string }>> {
  const key = await stateKey();
  const out: Array<{ pid: number; program: string }> = [];
  for (const name of await fsp.readdir('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const pid = Number(name);
    let env: string;
    try {
      env = await fsp.readFile(`/proc/${pid}/environ`, 'latin1');
    } catch {
      continue;
    }
    const mark = env.split('\0').find((v) => v.startsWith(`${OWNER_MARK}=`));
    const m = mark && /^[^=]+=(\d+):(\d+):([0-9a-f]+)$/.exec(mark);
    if (!m || m[3] !== key) continue; // another state directory's helper: its cleanup's business
    if (await ownerAlive({ pid: Number(m[1]), startTime: m[2]! })) continue;
    const exe = await processExe(pid);
    out.push({ pid, program: exe?.split('/').pop() ?? `pid ${pid}` });
  }
  return out;
}

/**
 * Releases everything recorded by processes that are gone (and, with `all`, by no process),
 * and reports what it did. Never touches what a live owner holds. A daemon can call it at
 * start-up.
 */
export async function cleanup(options: CleanupOptions = {}): Promise<CleanupReport> {
  const dryRun = options.dryRun ?? false;
  const report: CleanupReport = { dryRun, swept: [], kept: [], invalid: [], orphans: [], temps: [] };
  throwIfAborted(options.signal);
  const due: MountRecord[] = [];
  for (const listed of await listMountRecords()) {
    if ('error' in listed) {
      report.invalid.push({ file: listed.file, reason: listed.error.message });
      continue;
    }
    const r = listed.record;
    if (r.owner && (await ownerAlive(r.owner))) report.kept.push({ target: r.target, mntns: r.mntns, why: `its owner (pid ${r.owner.pid}) still runs` });
    else if (!r.owner && !options.all) report.kept.push({ target: r.target, mntns: r.mntns, why: 'it names no owner (a mount meant to outlive its maker): sweep it with all' });
    else due.push(r);
  }
  for (const r of order(due) as FuseMountRecord[]) {
    throwIfAborted(options.signal);
    const taken = await targetTaken(r);
    const entry: CleanupEntry = { target: r.target, mntns: r.mntns, owner: r.owner ?? null, actions: [], errors: taken ? [`left mounted: ${taken}`] : [] };
    report.swept.push(entry);
    if (dryRun) {
      entry.actions = plan(r, taken !== null);
      continue;
    }
    try {
      await releaseMountRecord(r, { report: (done) => entry.actions.push(done), skipTarget: taken !== null, ...(options.stop ? { stop: options.stop } : {}) });
    } catch (err) {
      const all = err instanceof AggregateError ? err.errors : [err];
      entry.errors.push(...all.map((e: unknown) => (e as Error).message));
    }
    debug('cleanup: %s: %j', r.target, entry);
  }
  for (const o of await orphanHelpers()) {
    if (dryRun) {
      report.orphans.push({ ...o, outcome: 'to stop' });
      continue;
    }
    const startTime = await processStartTime(o.pid);
    const exe = await processExe(o.pid);
    if (startTime === null || exe === null) continue;
    const outcome = await stopRecordedProcess({ program: o.program, pid: o.pid, startTime, exe }, { graceMs: 0, ...(options.stop ?? {}) }).catch((e: unknown) => `failed: ${(e as Error).message}`);
    report.orphans.push({ ...o, outcome });
  }
  if (!dryRun) report.temps = await removeStaleRecordTemps(async (pid) => (await processStartTime(pid)) !== null);
  return report;
}
