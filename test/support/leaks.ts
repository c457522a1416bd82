// Leak check scoped to one test run. It owns, and so may report, kill, unmount or detach, only
// what this run created:
//  - processes descended from the mocha process (ppid chains in /proc/PID/stat), or carrying a
//    mark of the run that a process keeps when its parent exits and it is re-parented to init:
//    the run's IMGMOUNT_TEST_RUN=<id> in its initial environment (every child of the tests
//    inherits it), its cwd inside the run's temp dir (hooks.ts makes the run's cwd a directory
//    there), or an argument or open file inside the run's temp dir. FUSE helpers get a fixed
//    environment from the library and libfuse moves them to / even in the foreground, so for
//    them neither the environment nor the cwd says anything; the files they serve do: the image
//    is at their fd 3 (tests mount copies in the run's temp dir: fixtures.ts, images.ts), a
//    persistent helper writes to a log in the run's state dir, and gocryptfs and fuse-overlayfs
//    name session directories there.
//  - loop devices whose backing file is under the run's temp dir (tests copy shared fixtures
//    there before attaching them: test/support/fixtures.ts, images.ts);
//  - mounts at or under the run's temp dir, or registered with registerMountPoint();
//  - mount records and session directories in the run's state dir, and this process's fds.
// Anything else on the machine (another test run, another user's squashfuse) is never touched.
// Everything is compared against a snapshot taken at the start (of a test file, of the run):
// only what appeared since counts. Fields are compared exactly: paths by components (never a
// bare string prefix: /dev/loop1 vs /dev/loop10), processes by pid and start time.
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';

/** One test run: the process that runs the tests and the marks its children carry. */
export interface TestRun {
  /** The mocha process. */
  pid: number;
  /** Value of IMGMOUNT_TEST_RUN in the run's children. */
  id: string;
  /** The run's temp dir (real path, no symlinks). */
  tmp: string;
  /** IMGMOUNT_STATE_DIR of the run (mount records in mounts/, session directories in sessions/). */
  stateDir: string;
}

export const RUN_ENV = 'IMGMOUNT_TEST_RUN';

/** Mount points a test created outside the temp dir (checked as if inside). */
const registeredMounts = new Set<string>();

/** Registers a mount point a test creates (exact path, as mountinfo will show it). */
export function registerMountPoint(p: string): string {
  registeredMounts.add(path.resolve(p));
  return p;
}

/** True if `p` is `dir` or inside it (by path components). */
export function within(p: string, dir: string): boolean {
  const rel = path.relative(dir, p);
  return rel === '' || (!path.isAbsolute(rel) && rel !== '..' && !rel.startsWith(`..${path.sep}`));
}

// ---------------------------------------------------------------------------------------
// Processes

export interface ProcEntry {
  pid: number;
  ppid: number;
  comm: string;
  /** Process state letter (R, S, D, Z, ...). */
  state: string;
  /** Start time in clock ticks after boot (field 22). */
  startTime: number;
}

/** Parses /proc/PID/stat (the comm may hold spaces and parentheses). */
export function parseStat(stat: string): ProcEntry {
  const open = stat.indexOf('(');
  const close = stat.lastIndexOf(')');
  const f = stat.slice(close + 2).split(' ');
  return { pid: Number(stat.slice(0, open).trim()), comm: stat.slice(open + 1, close), state: f[0]!, ppid: Number(f[1]), startTime: Number(f[19]) };
}

/** Every process visible in /proc, by pid. */
export function processTable(): Map<number, ProcEntry> {
  const table = new Map<number, ProcEntry>();
  for (const name of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const e = parseStat(fs.readFileSync(`/proc/${name}/stat`, 'utf8'));
      table.set(e.pid, e);
    } catch {
      // gone meanwhile
    }
  }
  return table;
}

/** True if `ancestor` is on `pid`'s ppid chain (not `pid` itself). */
export function isDescendant(pid: number, ancestor: number, table: ReadonlyMap<number, Pick<ProcEntry, 'ppid'>>): boolean {
  const seen = new Set<number>();
  for (let p = table.get(pid)?.ppid; p !== undefined && p > 0 && !seen.has(p); p = table.get(p)?.ppid) {
    if (p === ancestor) return true;
    seen.add(p);
  }
  return false;
}

/** `pid` and its ppid chain up to init. */
export function ancestry(pid: number, table: ReadonlyMap<number, Pick<ProcEntry, 'ppid'>>): Set<number> {
  const out = new Set<number>();
  for (let p: number | undefined = pid; p !== undefined && p > 0 && !out.has(p); p = table.get(p)?.ppid) out.add(p);
  return out;
}

/** What a process shows of itself in /proc; null where it could not be read (gone, not ours to read). */
export interface ProcMarks {
  /** Its initial environment (/proc/PID/environ). */
  environ: string[] | null;
  /** Its working directory. */
  cwd: string | null;
  cmdline: string[] | null;
  /** Targets of its open fds. */
  fds: string[] | null;
}

function readOr<T>(f: () => T): T | null {
  try {
    return f();
  } catch {
    return null;
  }
}

const deleted = (s: string): string => s.replace(/ \(deleted\)$/, '');

export function readMarks(pid: number): ProcMarks {
  const nul = (file: string) => readOr(() => fs.readFileSync(`/proc/${pid}/${file}`, 'utf8').split('\0').filter(Boolean));
  return {
    environ: nul('environ'),
    cwd: readOr(() => deleted(fs.readlinkSync(`/proc/${pid}/cwd`))),
    cmdline: nul('cmdline'),
    fds: readOr(() =>
      fs
        .readdirSync(`/proc/${pid}/fd`)
        .map((fd) => readOr(() => deleted(fs.readlinkSync(`/proc/${pid}/fd/${fd}`))))
        .filter((t): t is string => t !== null),
    ),
  };
}

export type Ownership = 'descendant' | 'environment' | 'cwd' | 'command line' | 'open file';

/** True if the string names a path inside `dir`, whole or after "=" or "," (helper options like lowerdir=). */
function namesPathIn(arg: string, dir: string): boolean {
  return arg.split(/[=,:]/).some((part) => path.isAbsolute(part) && within(path.normalize(part), dir));
}

/**
 * Why a process belongs to `run`, or null if it does not. `descendant`: the run's process is
 * on its ppid chain. Otherwise (its parent exited and it was re-parented) one of its marks:
 * the run's IMGMOUNT_TEST_RUN in its initial environment, its cwd, an argument or an open file
 * inside the run's temp dir.
 */
export function ownership(pid: number, run: Pick<TestRun, 'pid' | 'id' | 'tmp'>, table: ReadonlyMap<number, Pick<ProcEntry, 'ppid'>>, marks: ProcMarks): Ownership | null {
  if (isDescendant(pid, run.pid, table)) return 'descendant';
  if (marks.environ?.includes(`${RUN_ENV}=${run.id}`)) return 'environment';
  if (marks.cwd !== null && within(marks.cwd, run.tmp)) return 'cwd';
  if (marks.cmdline?.some((a) => namesPathIn(a, run.tmp))) return 'command line';
  if (marks.fds?.some((t) => path.isAbsolute(t) && within(t, run.tmp))) return 'open file';
  return null;
}

export interface RunProcess {
  pid: number;
  comm: string;
  startTime: number;
  why: Ownership;
}

/**
 * Live processes of the run (zombies are dead and left to their parent): every process that
 * started after the run's process did and belongs to it by ownership(), except the run's
 * process and its ancestors.
 */
export function runProcesses(run: TestRun, table = processTable()): RunProcess[] {
  const self = table.get(run.pid);
  const mine = ancestry(run.pid, table);
  const out: RunProcess[] = [];
  for (const e of table.values()) {
    if (mine.has(e.pid) || e.state === 'Z' || e.state === 'X') continue;
    // Started before the run: cannot be the run's (a cheap filter before reading its marks).
    if (self && e.startTime < self.startTime) continue;
    const why = ownership(e.pid, run, table, isDescendant(e.pid, run.pid, table) ? { environ: null, cwd: null, cmdline: null, fds: null } : readMarks(e.pid));
    if (why) out.push({ pid: e.pid, comm: e.comm, startTime: e.startTime, why });
  }
  return out;
}

/** Programs that serve FUSE mounts. */
export const HELPER_PROGRAMS = new Set(['squashfuse', 'squashfuse_ll', 'fuse2fs', 'gocryptfs', 'fuse-overlayfs']);

let currentRun: TestRun | undefined;

/** Sets the run helperProcesses() looks at (hooks.ts, once). */
export function setCurrentRun(run: TestRun): void {
  currentRun = run;
}

/** This run's running FUSE helper processes, as "pid comm" (another run's are not listed). */
export function helperProcesses(): string[] {
  if (!currentRun) throw new Error('helperProcesses(): no test run (test/support/hooks.ts sets it)');
  return runProcesses(currentRun)
    .filter((p) => HELPER_PROGRAMS.has(p.comm))
    .map((p) => `${p.pid} ${p.comm}`);
}

// ---------------------------------------------------------------------------------------
// Loop devices and mounts

export interface BoundLoop {
  name: string;
  backingFile: string;
}

function unescapeMountField(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
}

/** Bound loop devices from sysfs (no privilege needed). */
export function boundLoops(): BoundLoop[] {
  let names: string[] = [];
  try {
    names = fs.readdirSync('/sys/block').filter((n) => /^loop\d+$/.test(n));
  } catch {
    return [];
  }
  const out: BoundLoop[] = [];
  for (const name of names) {
    try {
      const raw = fs.readFileSync(`/sys/block/${name}/loop/backing_file`, 'utf8').replace(/\n$/, '');
      out.push({ name, backingFile: deleted(raw) });
    } catch {
      // not bound
    }
  }
  return out;
}

/** Mount points of /proc/self/mountinfo (field 5, unescaped). */
export function mountPoints(): string[] {
  return fs
    .readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => unescapeMountField(l.split(' ')[4]!));
}

/** A loop device is the run's if its backing file is under the run's temp dir. */
export function ownsLoop(run: Pick<TestRun, 'tmp'>, l: BoundLoop): boolean {
  return path.isAbsolute(l.backingFile) && within(l.backingFile, run.tmp);
}

/** A mount is the run's if it is at or under the run's temp dir, or a test registered it. */
export function ownsMount(run: Pick<TestRun, 'tmp'>, mountPoint: string): boolean {
  return within(mountPoint, run.tmp) || registeredMounts.has(mountPoint);
}

// ---------------------------------------------------------------------------------------
// Snapshots and the check

export interface LeakSnapshot {
  loops: Set<string>;
  mounts: Set<string>;
  processes: Set<string>;
  records: Set<string>;
  sessions: Set<string>;
  /** fd number -> target, when fds are checked. */
  fds?: Map<string, string>;
}

/** This process's open fds, number -> target. */
export function openFdTargets(): Map<string, string> {
  const out = new Map<string, string>();
  const self = `/proc/${process.pid}/fd`;
  for (const fd of fs.readdirSync('/proc/self/fd')) {
    const target = readOr(() => fs.readlinkSync(`/proc/self/fd/${fd}`));
    // null: the fd readdir itself used, closed by now.
    if (target !== null && target !== self) out.set(fd, target);
  }
  return out;
}

function listDir(dir: string): string[] {
  return readOr(() => fs.readdirSync(dir)) ?? [];
}

const loopKey = (l: BoundLoop) => `${l.name}\0${l.backingFile}`;
const procKey = (p: { pid: number; startTime: number }) => `${p.pid}\0${p.startTime}`;

export function snapshotLeaks(run: TestRun, o: { fds?: boolean } = {}): LeakSnapshot {
  return {
    loops: new Set(boundLoops().filter((l) => ownsLoop(run, l)).map(loopKey)),
    mounts: new Set(mountPoints().filter((m) => ownsMount(run, m))),
    processes: new Set(runProcesses(run).map(procKey)),
    records: new Set(listDir(path.join(run.stateDir, 'mounts'))),
    sessions: new Set(listDir(path.join(run.stateDir, 'sessions'))),
    ...(o.fds ? { fds: openFdTargets() } : {}),
  };
}

export interface Leaks {
  processes: RunProcess[];
  mounts: string[];
  loops: BoundLoop[];
  records: string[];
  sessions: string[];
  fds: Array<{ fd: string; target: string }>;
}

/** What the run created since `before` and still holds. */
export function findLeaks(run: TestRun, before: LeakSnapshot): Leaks {
  return {
    processes: runProcesses(run).filter((p) => !before.processes.has(procKey(p))),
    mounts: mountPoints().filter((m) => ownsMount(run, m) && !before.mounts.has(m)),
    loops: boundLoops().filter((l) => ownsLoop(run, l) && !before.loops.has(loopKey(l))),
    records: listDir(path.join(run.stateDir, 'mounts')).filter((r) => !before.records.has(r)),
    sessions: listDir(path.join(run.stateDir, 'sessions')).filter((s) => !before.sessions.has(s)),
    fds: before.fds ? [...openFdTargets()].filter(([fd, t]) => before.fds!.get(fd) !== t).map(([fd, target]) => ({ fd, target })) : [],
  };
}

function empty(l: Leaks): boolean {
  return !l.processes.length && !l.mounts.length && !l.loops.length && !l.records.length && !l.sessions.length && !l.fds.length;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function alive(p: RunProcess): boolean {
  const s = readOr(() => parseStat(fs.readFileSync(`/proc/${p.pid}/stat`, 'utf8')));
  return s !== null && s.startTime === p.startTime && s.state !== 'Z' && s.state !== 'X';
}

/**
 * Cleans up what `findLeaks` found: kills the run's processes (each re-identified by pid and
 * start time right before its signal), unmounts the mounts (deepest first, lazily), detaches
 * the loop devices still bound, removes the records and the session directories that hold no
 * mount. Open fds are reported, not closed: their owner would close the number again later,
 * by then someone else's file. Returns what could not be cleaned.
 */
export async function cleanLeaks(run: TestRun, before: LeakSnapshot, leaks: Leaks): Promise<string[]> {
  const left: string[] = [];
  for (const p of leaks.processes) {
    if (!alive(p)) continue;
    try {
      process.kill(p.pid, 'SIGKILL');
    } catch {
      // gone meanwhile
    }
  }
  for (let i = 0; i < 100 && leaks.processes.some(alive); i++) await sleep(20);
  for (const p of leaks.processes.filter(alive)) left.push(`process ${p.pid} ${p.comm} survived SIGKILL`);
  for (const m of [...leaks.mounts].sort((a, b) => b.length - a.length)) {
    try {
      execFileSync('umount', ['-l', m], { stdio: 'ignore' });
    } catch {
      left.push(`mount at ${m} could not be unmounted`);
    }
  }
  // Re-listed: unmounting releases auto-clearing devices by itself.
  for (const l of boundLoops().filter((l) => ownsLoop(run, l) && !before.loops.has(loopKey(l)))) {
    try {
      execFileSync('losetup', ['-d', `/dev/${l.name}`], { stdio: 'ignore' });
    } catch {
      left.push(`loop device /dev/${l.name} could not be detached`);
    }
  }
  for (const r of leaks.records) fs.rmSync(path.join(run.stateDir, 'mounts', r), { force: true });
  const mounts = mountPoints();
  for (const s of leaks.sessions) {
    const dir = path.join(run.stateDir, 'sessions', s);
    // Never recurse into a mount: rm would delete what the mounted filesystem holds.
    if (mounts.some((m) => within(m, dir))) left.push(`session directory ${dir} kept: a mount is still inside`);
    else fs.rmSync(dir, { recursive: true, force: true });
  }
  return left;
}

export function describeLeaks(l: Leaks): string[] {
  return [
    ...l.processes.map((p) => `process ${p.pid} ${p.comm} of this run still running (${p.why})`),
    ...l.mounts.map((m) => `mount left at ${m}`),
    ...l.loops.map((d) => `loop device /dev/${d.name} left bound to ${d.backingFile}`),
    ...l.records.map((r) => `mount record mounts/${r} left in the state dir`),
    ...l.sessions.map((s) => `session directory sessions/${s} left in the state dir`),
    ...l.fds.map((f) => `fd ${f.fd} left open (${f.target})`),
  ];
}

/**
 * Finds what the run left since `before`, cleans it up and returns a description ('' if
 * nothing). Things released asynchronously (a killed child's fds, an auto-clearing loop
 * device, a pipe closed on the next tick) get up to `settleMs` to go first.
 */
export async function checkLeaks(run: TestRun, before: LeakSnapshot, o: { settleMs?: number } = {}): Promise<string> {
  const settle = o.settleMs ?? 2000;
  let leaks = findLeaks(run, before);
  for (const end = Date.now() + settle; !empty(leaks) && Date.now() < end; leaks = findLeaks(run, before)) await sleep(25);
  if (empty(leaks)) return '';
  const report = describeLeaks(leaks);
  report.push(...(await cleanLeaks(run, before, leaks)));
  return report.join('\n  ');
}
