// What serves a mount, written down so that another process (`imgmount umount TARGET`, or a
// daemon after a restart) can release it: FUSE helper processes, internal mounts that could
// not be detached, and the session directory holding them. Kernel mounts need no record:
// their loop devices are autoclear and go with the unmount.
//
// Records live in IMGMOUNT_STATE_DIR (default /run/imgmount, a tmpfs: gone after a reboot,
// like the mounts they describe), one JSON file per (mount namespace, target) in `mounts/`;
// session directories in `sessions/`.
//
// A record drives kill, umount and rm, so it is trusted only as far as this holds:
//  - the state directory (and `mounts/`, `sessions/`) passes the trust check of
//    lib/util/trusted-path (root-owned, nobody else can write it or any directory above it)
//    before anything in it is created or read, else ERR_UNSAFE_STATE_DIR; positive results are
//    memoised per path for the process, and the resolved path is what is used afterwards;
//  - records are written to a fresh temp file (O_EXCL|O_NOFOLLOW, 0600) renamed over the record;
//    a record's first write (its intent) is linked to its name instead, which fails if a record
//    is there already: one (namespace, target) has one record, of one mount, and a second mount
//    there is ERR_TARGET_IN_USE (lib/drivers/target-in-use.ts) before it mounts anything;
//  - a record is read through O_NOFOLLOW and must be a regular file of the effective uid, not
//    writable by group or others, at most 64 KiB, and valid against the schema below: every
//    field's type, the target and mount namespace that were looked up, mounts confined to the
//    target or to the record's session directories, session directories directly under
//    `<state dir>/sessions`. Anything else is ERR_MOUNT_RECORD_INVALID, and nothing in it is
//    acted on.

import { createHash } from 'node:crypto';
import { constants as C } from 'node:fs';
import * as fsp from 'node:fs/promises';
import { constants as osConstants } from 'node:os';
import * as path from 'node:path';
import { ImgmountError, argumentError, fromNodeError, hasErrorCode } from '../errors';
import { native } from '../native/binding';
import { pathContains } from '../image/authorize';
import { checkTrustedPath } from '../util/trusted-path';
import type { DriverName } from './types';
import { uniqueSuffix } from '../util/unique';
import { holderOf, targetInUseError, type TargetHolder } from './target-in-use';

export interface HelperRecord {
  /** Program name (no directory), for messages. */
  program: string;
  pid: number;
  /** Process start time (field 22 of /proc/PID/stat), so a reused pid is never signalled. */
  startTime: string;
  /**
   * The helper's executable (/proc/PID/exe when it started): the pid is signalled only while it
   * still runs this. A helper recorded without one is never signalled.
   */
  exe?: string;
}

/** The process a record belongs to: cleanup() sweeps a record once that process is gone. */
export interface RecordOwner {
  pid: number;
  /** Its start time (field 22 of /proc/PID/stat): a reused pid is another process. */
  startTime: string;
}

export interface MountRecord {
  target: string;
  /** Inode of the mount namespace the target is in (from /proc/self/ns/mnt). */
  mntns: string;
  driver: DriverName;
  fstype: string;
  /** Helpers serving the target and its internal mounts, in start order. */
  helpers: HelperRecord[];
  /** Mounts below the target (data partitions) to unmount before it. */
  nestedMounts?: string[];
  /** Internal mounts to unmount after the target, in that order (inside the session directories). */
  internalMounts: string[];
  /** Directory holding the internal mount points, removed last (directly under `<state dir>/sessions`). */
  sessionDir?: string;
  /** More session directories (a root whose top layer is a FUSE mount with its own). */
  moreSessionDirs?: string[];
  /**
   * Whose it is. Written before the first mount it describes (an intent: some of what it names
   * may not exist yet) and removed after the last release, so a process killed at any moment
   * leaves a record of everything it left. Absent for mounts meant to outlive their maker (the
   * CLI's): those are swept by `cleanup({ all: true })` only.
   */
  owner?: RecordOwner;
  /** The top mount's expected filesystem type, so that cleanup() unmounts only that at the target. */
  expectFstype?: string;
  created: string;
}

export const DEFAULT_STATE_DIR = '/run/imgmount';

/** Largest record read (or written). */
export const MAX_RECORD_BYTES = 64 * 1024;

/** The configured state directory, as given (IMGMOUNT_STATE_DIR or /run/imgmount); not checked: see ensureStateDir(). */
export function stateDir(): string {
  return process.env.IMGMOUNT_STATE_DIR ?? DEFAULT_STATE_DIR;
}

/** Directories that passed the trust check: as configured -> as resolved. */
const trusted = new Map<string, string>();

function unsafeStateDir(dir: string, reason: string): ImgmountError {
  const fromEnv = process.env.IMGMOUNT_STATE_DIR !== undefined;
  return new ImgmountError(
    'ERR_UNSAFE_STATE_DIR',
    `the state directory ${dir}${fromEnv ? ' (IMGMOUNT_STATE_DIR)' : ''} cannot hold mount records: ${reason}. ` +
      'It and every directory above it must be owned by root and not writable by group or others (unless sticky, like /tmp)',
    { path: dir, details: { reason, ...(fromEnv ? { variable: 'IMGMOUNT_STATE_DIR' } : {}) } },
  );
}

async function exists(p: string): Promise<boolean> {
  try {
    await fsp.lstat(p);
    return true;
  } catch (err) {
    if (hasErrorCode(err, 'ENOENT')) return false;
    throw err;
  }
}

/**
 * `dir` after the trust check (memoised when it passes), created first with `mode` when
 * `create` ('parents': missing parents too, root-owned 0755); null if it does not exist and
 * `create` is false.
 */
/** Checks in flight, so that concurrent first uses (64 roots at start-up) check once. */
const checking = new Map<string, Promise<string | null>>();

async function trustedDir(dir: string, create: 'parents' | 'one' | false, mode: number): Promise<string | null> {
  const hit = trusted.get(dir);
  if (hit !== undefined) return hit;
  const key = `${create}\0${dir}`;
  let pending = checking.get(key);
  if (!pending) {
    pending = checkDir(dir, create, mode).finally(() => checking.delete(key));
    checking.set(key, pending);
  }
  return pending;
}

async function checkDir(dir: string, create: 'parents' | 'one' | false, mode: number): Promise<string | null> {
  try {
    if (create === 'parents') await fsp.mkdir(dir, { recursive: true, mode });
    else if (create === 'one') await fsp.mkdir(dir, { mode }).catch((err: unknown) => (hasErrorCode(err, 'EEXIST') ? undefined : Promise.reject(err)));
    else if (!(await exists(dir))) return null;
  } catch (err) {
    throw fromNodeError(err, `state directory ${dir}`);
  }
  const verdict = await checkTrustedPath(dir);
  if (verdict.reason !== null) throw unsafeStateDir(dir, verdict.reason);
  trusted.set(dir, verdict.path);
  return verdict.path;
}

async function stateDirectory(create: boolean): Promise<string | null> {
  return trustedDir(path.resolve(stateDir()), create ? 'parents' : false, 0o755);
}

async function subdir(name: 'mounts' | 'sessions', create: boolean): Promise<string | null> {
  const base = await stateDirectory(create);
  return base === null ? null : trustedDir(path.join(base, name), create ? 'one' : false, 0o700);
}

/**
 * The state directory, created if missing (0755, missing parents root-owned) and checked (see
 * the file comment): its resolved path, to use instead of the configured one. Rejects with
 * ERR_UNSAFE_STATE_DIR naming the directory and why.
 */
export async function ensureStateDir(): Promise<string> {
  return (await stateDirectory(true))!;
}

/** `<state dir>/sessions` (0700), created and checked as ensureStateDir(); session directories go directly in it. */
export async function sessionsDir(): Promise<string> {
  return (await subdir('sessions', true))!;
}

let ownNamespace: Promise<string> | undefined;

/** The mount namespace of this process, as its inode number (read once: Node's threads never change it). */
export function currentMountNamespace(): Promise<string> {
  ownNamespace ??= fsp.readlink('/proc/self/ns/mnt').then(
    (link) => /\[(\d+)\]/.exec(link)?.[1] ?? link,
    (err: unknown) => {
      ownNamespace = undefined;
      throw err;
    },
  );
  return ownNamespace;
}

let self: Promise<RecordOwner> | undefined;

/** This process as a record owner (read once). */
export function thisOwner(): Promise<RecordOwner> {
  self ??= processStartTime(process.pid).then((startTime) => {
    if (startTime === null) throw new Error('cannot read this process\'s start time from /proc/self/stat');
    return { pid: process.pid, startTime };
  });
  return self;
}

/**
 * A process whose namespaces another process can enter later, to release a mount it made
 * there: the pid of a { pid } target (or of its mntns), with its start time.
 */
export async function entryProcess(ns: { pid: number } | { userns?: unknown; mntns?: unknown }): Promise<{ pid: number; startTime: string } | undefined> {
  const mnt = (ns as { mntns?: unknown }).mntns;
  const pid = 'pid' in ns ? ns.pid : typeof mnt === 'object' && mnt !== null && 'pid' in mnt ? (mnt as { pid: number }).pid : undefined;
  if (pid === undefined) return undefined;
  const startTime = await processStartTime(pid);
  return startTime ? { pid, startTime } : undefined;
}

/**
 * What a helper carries in its environment (OWNER_MARK) so that cleanup() can find it even if
 * its owner died before recording it: the owner and the state directory its records are in
 * ("pid:startTime:key"), so that only the cleanup of that state directory acts on it.
 */
export async function ownerMark(owner: RecordOwner): Promise<string> {
  return `${owner.pid}:${owner.startTime}:${await stateKey()}`;
}

/** A short fixed name of the (resolved) state directory, for owner marks. */
export async function stateKey(): Promise<string> {
  return createHash('sha256').update(await ensureStateDir()).digest('hex').slice(0, 16);
}

/** Whether the owner of a record still runs (same pid, same start time, not a zombie). */
export async function ownerAlive(owner: RecordOwner): Promise<boolean> {
  return processRuns(owner.pid, owner.startTime);
}

/** Names already hashed: a root's record is named at least twice (written, then removed). */
const recordNames = new Map<string, string>();
const RECORD_NAMES_KEPT = 1024;

function recordName(mntns: string, target: string): string {
  const key = `${mntns}\0${target}`;
  let name = recordNames.get(key);
  if (name === undefined) {
    name = `${createHash('sha256').update(key).digest('hex').slice(0, 32)}.json`;
    if (recordNames.size >= RECORD_NAMES_KEPT) recordNames.delete(recordNames.keys().next().value!);
    recordNames.set(key, name);
  }
  return name;
}

/** Where the record of `target` in mount namespace `mntns` (default ours) is kept; the records directory is created and checked. */
export async function mountRecordFile(target: string, mntns?: string): Promise<string> {
  const ns = mntns ?? (await currentMountNamespace());
  return path.join((await subdir('mounts', true))!, recordName(ns, target));
}

/**
 * The record file of (mntns, target) if the records directory was already checked by this
 * process, else null; synchronous, for the process-exit path.
 */
export function checkedRecordFile(target: string, mntns: string): string | null {
  const base = trusted.get(path.resolve(stateDir()));
  const dir = base === undefined ? undefined : trusted.get(path.join(base, 'mounts'));
  return dir === undefined ? null : path.join(dir, recordName(mntns, target));
}

/**
 * The fields of /proc/PID/stat after the command name (the state is [0], the start time [19]),
 * or null if there is no such process. One hop (open, read, close in one worker call), not
 * fs.readFile's four or five: a helper's start time is read between its spawn and its record
 * on every FUSE mount, and owners and helpers are checked this way before every signal.
 */
async function procStatFields(pid: number): Promise<string[] | null> {
  const [stat] = await native((b) => b.readTextFiles([`/proc/${pid}/stat`], PROC_STAT_MAX)).catch(() => [null]);
  if (typeof stat !== 'string') return null;
  // The command name (field 2) may hold spaces and parentheses: split after the last ')'.
  return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
}

/** Start time of a process, or null if it does not exist. */
export async function processStartTime(pid: number): Promise<string | null> {
  return (await procStatFields(pid))?.[19] ?? null;
}

/** Whether process `pid` runs (not a zombie) and started at `startTime`: the same process, not a reused pid. */
export async function processRuns(pid: number, startTime: string): Promise<boolean> {
  const fields = await procStatFields(pid);
  return fields !== null && fields[0] !== 'Z' && fields[0] !== 'X' && fields[19] === startTime;
}

/** /proc/PID/stat is one line of 52 numbers and a command name of at most 64 bytes. */
const PROC_STAT_MAX = 4096;

/** The executable of a process (/proc/PID/exe, without the " (deleted)" of a replaced file), or null. */
export async function processExe(pid: number): Promise<string | null> {
  try {
    return (await fsp.readlink(`/proc/${pid}/exe`)).replace(/ \(deleted\)$/, '');
  } catch {
    return null;
  }
}

// ---------------------------------------------------------------------------------------
// The schema: every field's type, unknown fields ignored, paths confined.

function invalid(where: string, reason: string): ImgmountError {
  return new ImgmountError('ERR_MOUNT_RECORD_INVALID', `mount record ${where} is refused, nothing in it is acted on: ${reason}`, {
    path: where,
    details: { reason },
  });
}

class Refused extends Error {}

function need(ok: boolean, reason: string): void {
  if (!ok) throw new Refused(reason);
}

const DIGITS = /^\d{1,20}$/;
const PLAIN_NAME = /^[\w.+-]{1,255}$/;
const MAX_ENTRIES = 256;

/** An absolute, normalised path (no '.', '..', '//', trailing '/' or NUL). */
function isAbsolutePath(v: unknown): v is string {
  return typeof v === 'string' && v.length <= 4096 && path.isAbsolute(v) && !v.includes('\0') && path.normalize(v) === v && (v === '/' || !v.endsWith('/'));
}

function optional<T>(o: Record<string, unknown>, key: string, check: (v: unknown, name: string) => T): T | undefined {
  return o[key] === undefined ? undefined : check(o[key], key);
}

function list<T>(v: unknown, name: string, item: (x: unknown, name: string) => T): T[] {
  need(Array.isArray(v), `${name} is not an array`);
  const a = v as unknown[];
  need(a.length <= MAX_ENTRIES, `${name} has ${a.length} entries (at most ${MAX_ENTRIES})`);
  return a.map((x, i) => item(x, `${name}[${i}]`));
}

function absolutePath(v: unknown, name: string): string {
  need(isAbsolutePath(v), `${name} is not an absolute normalised path (${JSON.stringify(v)?.slice(0, 80)})`);
  return v as string;
}

function digits(v: unknown, name: string): string {
  need(typeof v === 'string' && DIGITS.test(v), `${name} is not a string of digits`);
  return v as string;
}

function text(v: unknown, name: string): string {
  need(typeof v === 'string' && v.length <= 256, `${name} is not a string (of at most 256 characters)`);
  return v as string;
}

function helper(v: unknown, name: string): HelperRecord {
  need(typeof v === 'object' && v !== null && !Array.isArray(v), `${name} is not an object`);
  const o = v as Record<string, unknown>;
  need(typeof o.program === 'string' && PLAIN_NAME.test(o.program) && o.program !== '.' && o.program !== '..', `${name}.program is not a plain program name`);
  need(Number.isSafeInteger(o.pid) && (o.pid as number) > 0, `${name}.pid is not a positive integer`);
  const h: HelperRecord = { program: o.program as string, pid: o.pid as number, startTime: digits(o.startTime, `${name}.startTime`) };
  const exe = optional(o, 'exe', (x) => absolutePath(x, `${name}.exe`));
  if (exe !== undefined) h.exe = exe;
  return h;
}

function sessionDirectory(sessions: string) {
  return (v: unknown, name: string): string => {
    const dir = absolutePath(v, name);
    need(path.dirname(dir) === sessions, `${name} (${dir}) is not a directory directly under ${sessions}`);
    return dir;
  };
}

/** The record in `raw`, checked (see the file comment); throws Refused with the reason. */
function parseRecord(raw: unknown, sessions: string, expected: { target: string; mntns: string } | undefined): MountRecord {
  need(typeof raw === 'object' && raw !== null && !Array.isArray(raw), 'it is not a JSON object');
  const o = raw as Record<string, unknown>;
  const target = absolutePath(o.target, 'target');
  const mntns = digits(o.mntns, 'mntns');
  if (expected) {
    need(target === expected.target, `it is for target ${target}, not ${expected.target}`);
    need(mntns === expected.mntns, `it is for mount namespace ${mntns}, not ${expected.mntns}`);
  }
  need(o.driver === 'kernel' || o.driver === 'fuse', 'driver is not "kernel" or "fuse"');
  const r: MountRecord = {
    target,
    mntns,
    driver: o.driver as DriverName,
    fstype: text(o.fstype, 'fstype'),
    helpers: list(o.helpers, 'helpers', helper),
    internalMounts: [],
    created: text(o.created, 'created'),
  };
  const nested = optional(o, 'nestedMounts', (v, n) => list(v, n, absolutePath));
  if (nested) {
    for (const [i, m] of nested.entries()) need(m !== target && pathContains(target, m), `nestedMounts[${i}] (${m}) is not inside the target ${target}`);
    r.nestedMounts = nested;
  }
  const owner = optional(o, 'owner', (v, n) => {
    need(typeof v === 'object' && v !== null && !Array.isArray(v), `${n} is not an object`);
    const e = v as Record<string, unknown>;
    need(Number.isSafeInteger(e.pid) && (e.pid as number) > 0, `${n}.pid is not a positive integer`);
    return { pid: e.pid as number, startTime: digits(e.startTime, `${n}.startTime`) };
  });
  if (owner !== undefined) r.owner = owner;
  const expectFstype = optional(o, 'expectFstype', text);
  if (expectFstype !== undefined) r.expectFstype = expectFstype;
  const sessionDir = optional(o, 'sessionDir', sessionDirectory(sessions));
  if (sessionDir !== undefined) r.sessionDir = sessionDir;
  const more = optional(o, 'moreSessionDirs', (v, n) => list(v, n, sessionDirectory(sessions)));
  if (more) r.moreSessionDirs = more;
  const dirs = [...(sessionDir !== undefined ? [sessionDir] : []), ...(more ?? [])];
  r.internalMounts = list(o.internalMounts, 'internalMounts', absolutePath);
  for (const [i, m] of r.internalMounts.entries())
    need(dirs.some((d) => m !== d && pathContains(d, m)), `internalMounts[${i}] (${m}) is not inside the record's session directories (${dirs.join(', ') || 'none'})`);
  // The FUSE driver's own fields (FuseMountRecord).
  const extra = r as MountRecord & { internalMntns?: string; persist?: boolean; enter?: { pid: number; startTime: string } };
  const internalMntns = optional(o, 'internalMntns', digits);
  if (internalMntns !== undefined) extra.internalMntns = internalMntns;
  const enter = optional(o, 'enter', (v, n) => {
    need(typeof v === 'object' && v !== null && !Array.isArray(v), `${n} is not an object`);
    const e = v as Record<string, unknown>;
    need(Number.isSafeInteger(e.pid) && (e.pid as number) > 0, `${n}.pid is not a positive integer`);
    return { pid: e.pid as number, startTime: digits(e.startTime, `${n}.startTime`) };
  });
  if (enter !== undefined) extra.enter = enter;
  const persist = optional(o, 'persist', (v, n) => {
    need(typeof v === 'boolean', `${n} is not a boolean`);
    return v as boolean;
  });
  if (persist !== undefined) extra.persist = persist;
  return r;
}

/**
 * Checks a record (parsed JSON) against the schema and confinement rules, and against the
 * (target, mntns) it was looked up by when given. Resolves with a copy holding only the known
 * fields; rejects with ERR_MOUNT_RECORD_INVALID naming `where` and the reason.
 */
export async function validateMountRecord(raw: unknown, where: string, expected?: { target: string; mntns: string }): Promise<MountRecord> {
  const sessions = path.join(await ensureStateDir(), 'sessions');
  try {
    return parseRecord(raw, sessions, expected);
  } catch (err) {
    if (err instanceof Refused) throw invalid(where, err.message);
    throw err;
  }
}

// ---------------------------------------------------------------------------------------

/** How often an exclusive write is tried again when the record it collided with was gone before it was read. */
const EXCLUSIVE_TRIES = 3;

/**
 * Writes `record` (see the file comment). `exclusive`: the record's first write (its intent),
 * published by link(2) so that it never replaces one that exists: when the (namespace, target)
 * has a record already (another mount there, live, dead or persistent), rejects with
 * ERR_TARGET_IN_USE saying who holds it, and nothing is written. Later writes replace it.
 */
export async function saveMountRecord(record: MountRecord, options: { exclusive?: boolean } = {}): Promise<void> {
  const exclusive = options.exclusive === true;
  for (let tries = 1; ; tries++) {
    const w = await recordWrite(record);
    try {
      await native((b) => b.replaceFile(w.tmp, w.path, w.data, w.mode, exclusive ? { exclusive: true } : undefined));
      return;
    } catch (err) {
      if (!(exclusive && hasErrorCode(err, 'EEXIST'))) throw fromNodeError(err, `writing the mount record ${w.path}`);
    }
    const holder = await holderOfRecord(record.target, record.mntns);
    if (holder !== undefined) throw targetInUseError(record.target, w.path, holder);
    if (tries >= EXCLUSIVE_TRIES) throw targetInUseError(record.target, w.path, { kind: 'vanished' });
  }
}

/**
 * `record` checked and serialised for one write: the bytes, the record file and a temporary
 * name beside it (unique per write: the pid for removeStaleRecordTemps, a random part for the
 * rest), as native replaceFile takes them, or a mount's own call writes them as its intent
 * (native/attach-mount.cc, always exclusive: an EEXIST there is saveMountRecord's to explain).
 */
export async function recordWrite(record: MountRecord): Promise<{ tmp: string; path: string; data: Buffer; mode: number }> {
  const dir = (await subdir('mounts', true))!;
  const file = path.join(dir, recordName(record.mntns, record.target));
  // What could not be read back is not written: the very text written is read back and checked.
  const text = JSON.stringify(record, null, 2) + '\n';
  await validateMountRecord(JSON.parse(text), file, { target: record.target, mntns: record.mntns });
  const data = Buffer.from(text);
  if (data.length > MAX_RECORD_BYTES) throw invalid(file, `it would be ${data.length} bytes (at most ${MAX_RECORD_BYTES})`);
  return { tmp: `${file}.${process.pid}.${uniqueSuffix()}.tmp`, path: file, data, mode: 0o600 };
}

/** Who holds the record of `target` in `mntns`, read and checked as findMountRecord() does; undefined if it is gone. */
async function holderOfRecord(target: string, mntns: string): Promise<TargetHolder | undefined> {
  let existing: MountRecord | undefined;
  try {
    existing = await findMountRecord(target, mntns);
  } catch (err) {
    if (err instanceof ImgmountError && err.code === 'ERR_MOUNT_RECORD_INVALID') return { kind: 'invalid', error: err };
    throw err;
  }
  if (existing === undefined) return undefined;
  return holderOf(existing, existing.owner !== undefined && (await ownerAlive(existing.owner)), process.pid);
}

/** The text of a record file, or undefined if there is none; checked before it is read (see the file comment). */
async function readRecordFile(file: string): Promise<string | undefined> {
  let fh: fsp.FileHandle;
  try {
    fh = await fsp.open(file, C.O_RDONLY | C.O_NOFOLLOW | C.O_NONBLOCK);
  } catch (err) {
    if (hasErrorCode(err, 'ENOENT')) return undefined;
    if (hasErrorCode(err, 'ELOOP')) throw invalid(file, 'it is a symbolic link');
    throw fromNodeError(err, `reading the mount record ${file}`);
  }
  try {
    const st = await fh.stat();
    const euid = process.geteuid?.() ?? -1;
    if (!st.isFile()) throw invalid(file, 'it is not a regular file');
    if (st.uid !== euid) throw invalid(file, `it is owned by uid ${st.uid}, not ${euid}`);
    if ((st.mode & 0o022) !== 0) throw invalid(file, `it is writable by group or others (mode ${(st.mode & 0o7777).toString(8).padStart(4, '0')})`);
    if (st.size > MAX_RECORD_BYTES) throw invalid(file, `it is ${st.size} bytes (at most ${MAX_RECORD_BYTES})`);
    const buf = Buffer.alloc(MAX_RECORD_BYTES + 1);
    const { bytesRead } = await fh.read(buf, 0, buf.length, 0);
    if (bytesRead > MAX_RECORD_BYTES) throw invalid(file, `it grew past ${MAX_RECORD_BYTES} bytes while read`);
    return buf.subarray(0, bytesRead).toString('utf8');
  } finally {
    await fh.close();
  }
}

/**
 * The record of `target` in mount namespace `mntns` (default ours), checked (see the file
 * comment); undefined if there is none. Rejects with ERR_UNSAFE_STATE_DIR or
 * ERR_MOUNT_RECORD_INVALID.
 */
export async function findMountRecord(target: string, mntns?: string): Promise<MountRecord | undefined> {
  const ns = mntns ?? (await currentMountNamespace());
  const dir = await subdir('mounts', false);
  if (dir === null) return undefined;
  const file = path.join(dir, recordName(ns, target));
  const data = await readRecordFile(file);
  if (data === undefined) return undefined;
  let raw: unknown;
  try {
    raw = JSON.parse(data);
  } catch (err) {
    throw invalid(file, `it is not JSON (${(err as Error).message})`);
  }
  return validateMountRecord(raw, file, { target, mntns: ns });
}

export type ListedRecord = { file: string; record: MountRecord } | { file: string; error: ImgmountError };

/**
 * Every record in the state directory, each checked as findMountRecord() checks one (and named
 * as its target and namespace say it should be): the valid ones, and why each other one is
 * refused. None if the state directory does not exist.
 */
export async function listMountRecords(): Promise<ListedRecord[]> {
  const dir = await subdir('mounts', false);
  if (dir === null) return [];
  const out: ListedRecord[] = [];
  for (const name of (await fsp.readdir(dir)).filter((n) => n.endsWith('.json')).sort()) {
    const file = path.join(dir, name);
    try {
      const data = await readRecordFile(file);
      if (data === undefined) continue;
      let raw: unknown;
      try {
        raw = JSON.parse(data);
      } catch (err) {
        throw invalid(file, `it is not JSON (${(err as Error).message})`);
      }
      const record = await validateMountRecord(raw, file);
      if (recordName(record.mntns, record.target) !== name) throw invalid(file, `it is for ${record.target} (namespace ${record.mntns}), which is recorded under another name`);
      out.push({ file, record });
    } catch (err) {
      if (!(err instanceof ImgmountError)) throw err;
      out.push({ file, error: err });
    }
  }
  return out;
}

/** Temporary record files a writer left when it died (named `<record>.<pid>.<random>.tmp`): removed when that pid is gone. */
export async function removeStaleRecordTemps(alive: (pid: number) => Promise<boolean>): Promise<string[]> {
  const dir = await subdir('mounts', false);
  if (dir === null) return [];
  const removed: string[] = [];
  for (const name of await fsp.readdir(dir)) {
    const m = /^[0-9a-f]{32}\.json\.(\d+)\.[0-9a-f]+\.tmp$/.exec(name);
    if (!m || (await alive(Number(m[1])))) continue;
    await fsp.rm(path.join(dir, name), { force: true });
    removed.push(path.join(dir, name));
  }
  return removed;
}

export async function removeMountRecord(target: string, mntns?: string): Promise<void> {
  const ns = mntns ?? (await currentMountNamespace());
  const dir = await subdir('mounts', false);
  if (dir === null) return;
  await fsp.unlink(path.join(dir, recordName(ns, target))).catch((err: unknown) => {
    if (!hasErrorCode(err, 'ENOENT')) throw err;
  });
}

/**
 * Removes a session directory: its files and (empty) directories, never crossing into a mount.
 * Refuses anything but a directory directly under `<state dir>/sessions`. `expected`: the
 * names of the directories the caller made in it (tried first, in one hop). `thenRemove`: a file
 * (the record of what the session served) unlinked in that same hop once the directories are
 * gone; true if it is gone (ENOENT: someone removed it first), false if the caller must.
 */
export async function removeSessionDir(dir: string, expected: readonly string[] = [], thenRemove?: string): Promise<boolean> {
  const abs = path.resolve(dir);
  const sessions = await subdir('sessions', false);
  const refuse = (why: string): TypeError => argumentError('ERR_INVALID_ARG_VALUE', `refusing to remove ${dir}: ${why}`);
  if (sessions === null || path.dirname(abs) !== sessions) throw refuse(`session directories are directly under ${sessions ?? path.join(path.resolve(stateDir()), 'sessions')}`);
  // The caller knows what it made: these (empty) directories, then the session, rmdir'ed in one
  // hop. rmdir never crosses into a mount (EBUSY) nor removes anything unexpected (ENOTEMPTY):
  // any failure leaves the general walk below to remove what it may and say what it may not.
  if (expected.length > 0 && expected.every((n) => n !== '' && !n.includes('/') && n !== '.' && n !== '..')) {
    const unlinked = await native((b) => b.removeDirs([...expected.map((n) => path.join(abs, n)), abs], false, thenRemove)).catch(() => null);
    if (unlinked !== null) return thenRemove !== undefined && (unlinked === 0 || unlinked === -osConstants.errno.ENOENT);
  }
  const st = await fsp.lstat(abs).catch((err: unknown) => (hasErrorCode(err, 'ENOENT') ? null : Promise.reject(err)));
  if (st === null) return false;
  if (!st.isDirectory()) throw refuse('it is not a directory');
  let names: string[] = [];
  try {
    names = await fsp.readdir(abs);
  } catch (err) {
    if (hasErrorCode(err, 'ENOENT')) return false;
    throw err;
  }
  for (const n of names) {
    const p = path.join(abs, n);
    const entry = await fsp.lstat(p).catch(() => null);
    if (!entry) continue;
    if (entry.isDirectory()) await fsp.rmdir(p);
    else await fsp.unlink(p);
  }
  await fsp.rmdir(abs);
  return false;
}
