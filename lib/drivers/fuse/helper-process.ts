// One FUSE helper process (squashfuse, fuse2fs, gocryptfs, fuse-overlayfs): started with its
// image at fd 3 (and a /dev/fuse fd after it when we mounted for it), in its own session and
// process group so that a terminal's signals never reach it, with a minimal environment and no
// LD_PRELOAD. Its output is kept as a bounded tail (pipes) or, for helpers that must outlive
// this process, in a log file in the session directory (a pipe would break when we exit).
//
// Stopping follows Apptainer's Stop(target), bounded: after the unmount wait up to 1 s for the
// helper to exit by itself, then SIGTERM, up to 1 s more, then SIGKILL, and give up (with an
// error) if even that does not end it. stopRecordedProcess() does the same for a helper that
// another process started, identified by pid, start time and executable so a reused pid (or a
// forged record naming some other process) is never signalled.

import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { promisify } from 'node:util';
import type { Readable, Writable } from 'node:stream';
import { ImgmountError } from '../../errors';
import { closeFd, fstatFd } from '../../io/fd';
import { abortError } from '../../util/abort';
import { debug } from '../../util/debug';
import { finished } from 'node:stream/promises';
import { spawnHere, spawnInNamespaces } from '../../ns/spawn';
import { nativeSpawnAvailable, spawnNative } from '../../ns/native-child';
import { trackExit } from '../../util/child-exit';
import type { NamespaceTarget } from '../../ns/namespace';
import { processExe, processRuns, processStartTime, type HelperRecord } from '../mount-record';
import { SYSTEM_PATH } from './binaries';

const readAt = promisify(fs.read);

/** How much helper output is kept for error messages. */
const TAIL_BYTES = 8192;

export interface HelperExit {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** The helper's output (stdout and stderr), noise filtered, last lines only. */
  output: string;
}

export interface StopTimings {
  /** Wait this long for the helper to exit by itself (after its unmount) before SIGTERM. */
  graceMs?: number;
  /** Then this long after SIGTERM before SIGKILL. */
  termMs?: number;
  /** Then this long after SIGKILL before giving up. */
  killMs?: number;
}

const DEFAULT_STOP: Required<StopTimings> = { graceMs: 1000, termMs: 1000, killMs: 5000 };

export interface StartHelperOptions {
  /** Absolute path of the program. */
  program: string;
  args: readonly string[];
  /** Parent fds the helper gets at fds 3, 4, ... in this order. */
  fds?: readonly number[];
  /** Written to the helper's stdin, which is then closed (gocryptfs' key); else stdin is /dev/null. */
  input?: Buffer;
  /**
   * Start it inside this user namespace (through lib/ns' single-threaded helper, in a session
   * of its own). Never a mount namespace: a program is only ever run from our own filesystem.
   */
  userns?: NamespaceTarget;
  /** The owner mark it carries in its environment (OWNER_MARK, see ownerMark()). */
  ownerMark?: string;
  /** SIGTERM when this process dies (PR_SET_PDEATHSIG, through the namespace helper). */
  dieWithOwner?: boolean;
  /** Write stdout and stderr to this file (helpers that outlive us) instead of pipes. */
  logFile?: string;
  /**
   * Instead of logFile: an open unnamed file (O_TMPFILE) to write them to. Taken over here (marked
   * `taken`): kept open until the helper exits, to read its output, then closed.
   */
  anonymousLog?: { fd: number; taken: boolean };
  signal?: AbortSignal;
}

// Lines the helpers print in normal operation (Apptainer's filter, plus gocryptfs' and
// fuse2fs' current wording): they are not the reason anything failed.
const NOISE: RegExp[] = [
  /^Mounting read-only\.?$/,
  /^Warning: fuse2fs does not support using the journal\.?$/,
  /^There may be file system corruption or data loss if$/,
  /^the file system is not gracefully unmounted\.?$/,
  /^Recovering journal\.?$/,
  /^Journal needs recovery; running `fsck' is recommended\.?$/,
  /clone_fd/,
  /lazytime/,
  /^\/proc seems to be mounted as readonly/,
  /^fuse: warning: library too old/,
  /^The option "-allow_other" is set/,
  /^Reading Password from stdin$/,
  /^Reading password from stdin$/,
  /^Using password provided via stdin$/,
  /^Decrypting master key$/,
  /^Filesystem mounted and ready\.?$/,
];

/** Drops the helpers' routine chatter, keeps everything else. */
export function filterHelperOutput(text: string): string {
  return text
    .split('\n')
    .map((l) => l.replace(/\r$/, '').trimEnd())
    .filter((l) => l !== '' && !NOISE.some((re) => re.test(l.trim())))
    .join('\n');
}

/** The environment variable that marks a helper with the record owner it serves (see cleanup()). */
export const OWNER_MARK = 'IMGMOUNT_OWNER';

/**
 * The helpers' environment: fixed, nothing of the caller's (no LD_PRELOAD, no PATH with '.' in
 * it), and the owner mark.
 */
export function helperEnv(ownerMark?: string): NodeJS.ProcessEnv {
  return { PATH: SYSTEM_PATH, LC_ALL: 'C', ...(ownerMark ? { [OWNER_MARK]: ownerMark } : {}) };
}

export class HelperProcess {
  /** Program name ("squashfuse_ll"), for messages and records. */
  readonly name: string;
  /** Program path. */
  readonly program: string;
  readonly pid: number;
  /** Start time (field 22 of /proc/PID/stat), for records; null if it had already gone. */
  readonly startTime: string | null;
  /** Executable (/proc/PID/exe) once it ran the program, for records; null if it had already gone. */
  readonly exe: string | null;
  /** Resolves once the helper has exited and its output is complete. */
  readonly exited: Promise<HelperExit>;
  readonly #child: ChildProcess;
  #exit: HelperExit | undefined;

  /** @internal */
  constructor(child: ChildProcess, program: string, identity: { startTime: string | null; exe: string | null }, exited: Promise<HelperExit>) {
    this.#child = child;
    this.program = program;
    this.name = path.basename(program);
    this.pid = child.pid!;
    this.startTime = identity.startTime;
    this.exe = identity.exe;
    this.exited = exited.then((e) => (this.#exit = e));
  }

  /** True until the helper has exited. */
  get running(): boolean {
    return this.#exit === undefined && this.#child.exitCode === null && this.#child.signalCode === null;
  }

  /** Its exit, once known. */
  get exit(): HelperExit | undefined {
    return this.#exit;
  }

  /** Sends a signal; false if it has exited. */
  kill(signal: NodeJS.Signals = 'SIGTERM'): boolean {
    if (!this.running) return false;
    try {
      return this.#child.kill(signal);
    } catch {
      return false;
    }
  }

  /**
   * Waits (after the unmount) for the helper to exit, escalating to SIGTERM and SIGKILL. Resolves
   * with its exit; rejects with ERR_HELPER_FAILED if it survives SIGKILL (e.g. stuck in the kernel).
   */
  async stop(timings: StopTimings = {}): Promise<HelperExit> {
    const t = { ...DEFAULT_STOP, ...timings };
    if (await within(this.exited, t.graceMs)) return this.exited;
    debug('fuse: %s (pid %d) still running %d ms after its unmount: SIGTERM', this.name, this.pid, t.graceMs);
    this.kill('SIGTERM');
    if (await within(this.exited, t.termMs)) return this.exited;
    debug('fuse: %s (pid %d) ignored SIGTERM for %d ms: SIGKILL', this.name, this.pid, t.termMs);
    this.kill('SIGKILL');
    if (await within(this.exited, t.killMs)) return this.exited;
    throw new ImgmountError('ERR_HELPER_FAILED', `${this.name} (pid ${this.pid}) did not exit ${t.killMs} ms after SIGKILL`, {
      details: { program: this.name, pid: this.pid },
    });
  }

  /** Lets this process exit while the helper keeps running (persistent mounts). */
  detach(): void {
    this.#child.unref();
    // child.stdio holds the pipes themselves (the namespace helper's kept output wraps them).
    for (const s of [this.#child.stdout, this.#child.stderr, ...this.#child.stdio]) (s as unknown as { unref?: () => void } | null)?.unref?.();
  }
}

/** Resolves true if `p` settles within `ms`. */
function within(p: Promise<unknown>, ms: number): Promise<boolean> {
  return new Promise((resolve) => {
    const t = setTimeout(() => resolve(false), ms);
    p.then(
      () => {
        clearTimeout(t);
        resolve(true);
      },
      () => {
        clearTimeout(t);
        resolve(true);
      },
    );
  });
}

class Tail {
  #chunks: string[] = [];
  #size = 0;
  add(s: string): void {
    this.#chunks.push(s);
    this.#size += s.length;
    while (this.#size > TAIL_BYTES * 2 && this.#chunks.length > 1) this.#size -= this.#chunks.shift()!.length;
  }
  text(): string {
    const all = this.#chunks.join('');
    return all.length > TAIL_BYTES ? all.slice(all.length - TAIL_BYTES) : all;
  }
}

async function readLogTail(file: string): Promise<string> {
  try {
    const fh = await fsp.open(file, 'r');
    try {
      const size = (await fh.stat()).size;
      const len = Math.min(size, TAIL_BYTES);
      const buf = Buffer.alloc(len);
      await fh.read(buf, 0, len, size - len);
      return buf.toString('utf8');
    } finally {
      await fh.close();
    }
  } catch {
    return '';
  }
}

/** The tail of an unnamed log file of ours, which is closed after. */
async function readFdTail(fd: number): Promise<string> {
  try {
    const size = (await fstatFd(fd)).size;
    const len = Math.min(size, TAIL_BYTES);
    const buf = Buffer.alloc(len);
    const { bytesRead } = await readAt(fd, buf, 0, len, size - len);
    return buf.subarray(0, bytesRead).toString('utf8');
  } catch {
    return '';
  } finally {
    await closeFd(fd).catch(() => undefined);
  }
}

/**
 * Starts a helper and resolves once it runs (exec succeeded). Spawn failures (no such program,
 * namespace not enterable) reject with ERR_HELPER_FAILED naming the program.
 */
export async function startHelper(o: StartHelperOptions): Promise<HelperProcess> {
  const name = path.basename(o.program);
  if (o.signal?.aborted) throw abortError(o.signal);
  let logFd: number | undefined;
  let log: fsp.FileHandle | undefined;
  const keptLog = o.anonymousLog?.fd;
  if (o.anonymousLog) {
    o.anonymousLog.taken = true;
    logFd = o.anonymousLog.fd;
  } else if (o.logFile !== undefined) {
    log = await fsp.open(o.logFile, 'a', 0o600);
    logFd = log.fd;
  }
  const out = logFd ?? 'pipe';
  const stdin = o.input ? 'pipe' : 'ignore';
  let child: ChildProcess;
  try {
    if (o.userns) {
      if ('pid' in o.userns || o.userns.mntns != null) throw new TypeError('startHelper: helpers never run in another mount namespace');
      child = await spawnInNamespaces(o.userns, o.program, [...o.args], {
        stdio: [stdin, out, out],
        fds: [...(o.fds ?? [])],
        env: helperEnv(o.ownerMark),
        setsid: true,
        ...(o.dieWithOwner ? { deathSignal: 'SIGTERM' as const } : {}),
        ...(o.signal ? { signal: o.signal } : {}),
      });
    } else if (o.dieWithOwner) {
      // No pre-exec hook in child_process: the namespace helper sets PR_SET_PDEATHSIG, then execs.
      child = await spawnHere(o.program, [...o.args], {
        stdio: [stdin, out, out],
        fds: [...(o.fds ?? [])],
        env: helperEnv(o.ownerMark),
        setsid: true,
        deathSignal: 'SIGTERM',
        ...(o.signal ? { signal: o.signal } : {}),
      });
    } else {
      const viaChildProcess = async (): Promise<ChildProcess> => {
        const c = spawn(o.program, [...o.args], {
          stdio: [stdin, out, out, ...(o.fds ?? [])],
          env: helperEnv(o.ownerMark),
          detached: true, // setsid(): own session and process group
        });
        trackExit(c);
        await new Promise<void>((resolve, reject) => {
          c.once('spawn', resolve);
          c.once('error', reject);
        });
        return c;
      };
      if (logFd !== undefined && !o.input && (await nativeSpawnAvailable())) {
        // The common case (output to a log file, nothing on stdin): posix_spawn off the JS thread
        // instead of a fork of this whole process on it; child_process where pidfds are missing.
        try {
          child = (await spawnNative(o.program, o.args, { fds: [null, logFd, logFd, ...(o.fds ?? [])], env: helperEnv(o.ownerMark), setsid: true })) as unknown as ChildProcess;
          trackExit(child);
        } catch (err) {
          if (await nativeSpawnAvailable()) throw err;
          child = await viaChildProcess();
        }
      } else {
        child = await viaChildProcess();
      }
    }
  } catch (cause) {
    await log?.close();
    if (keptLog !== undefined) await closeFd(keptLog).catch(() => undefined);
    if ((cause as { name?: string }).name === 'AbortError') throw cause;
    const e = cause as NodeJS.ErrnoException;
    throw new ImgmountError('ERR_HELPER_FAILED', `cannot start ${name} (${o.program}): ${e.message}`, {
      cause,
      details: { program: name, path: o.program },
    });
  }
  // The helper has its own copy of the log fd: ours is closed while its identity is read.
  const logClosed = log?.close().catch((e: unknown) => debug('fuse: closing the log of %s: %s', name, (e as Error).message));
  child.on('error', (e) => debug('fuse: %s (pid %d): %s', name, child.pid, e.message));
  const tail = new Tail();
  if (logFd === undefined) {
    for (const s of [child.stdout, child.stderr] as Array<Readable | null>) {
      s?.setEncoding('utf8');
      s?.on('data', (d: string) => tail.add(d));
    }
  }
  if (o.input) {
    const stdinStream = child.stdin as Writable;
    stdinStream.on('error', () => undefined); // it may exit before reading: its exit says why
    stdinStream.end(o.input);
  }
  const exited = new Promise<HelperExit>((resolve) => {
    let done = false;
    const finish = async (code: number | null, signal: NodeJS.Signals | null): Promise<void> => {
      if (done) return;
      done = true;
      // Output kept since the spawn may still be on its way to the tail's listeners.
      await Promise.all([child.stdout, child.stderr].map((s) => (s && !s.destroyed ? finished(s).catch(() => undefined) : undefined)));
      const raw = keptLog !== undefined ? await readFdTail(keptLog) : o.logFile !== undefined ? await readLogTail(o.logFile) : tail.text();
      debug('fuse: %s (pid %d) exited: code %s, signal %s', name, child.pid, code, signal);
      resolve({ code, signal, output: filterHelperOutput(raw) });
    };
    // 'close' waits for the pipes; a grandchild holding them must not delay us past the exit.
    // Tracked since the spawn: a helper that died at once has already exited by now.
    const events = trackExit(child);
    void events.closed.then(({ code, signal }) => finish(code, signal));
    void events.exited.then(({ code, signal }) => {
      setTimeout(() => {
        child.stdout?.destroy();
        child.stderr?.destroy();
        void finish(code, signal);
      }, 250).unref();
    });
  });
  // The spawn (or the namespace helper's report) follows the exec: it already runs the program.
  // Start time, executable and the log's close are independent: one hop's wait, not three.
  const [startTime, exe] = await Promise.all([processStartTime(child.pid!), processExe(child.pid!), logClosed]);
  const helper = new HelperProcess(child, o.program, { startTime, exe }, exited);
  debug('fuse: started %s (pid %d): %s', name, helper.pid, o.args.join(' '));
  return helper;
}

/** Describes an exit for messages: "exit status 1" or "killed by SIGKILL". */
export function describeExit(e: HelperExit): string {
  return e.signal ? `killed by ${e.signal}` : `exit status ${e.code}`;
}

// ---------------------------------------------------------------------------------------
// Helpers of another process (from a MountRecord): no child handle, only pid, start time and
// executable, all re-checked right before every signal.

/**
 * 'ours': `h.pid` runs (not a zombie) with the recorded start time and executable; 'gone': no
 * such process (exited, or the pid now belongs to another program); 'exiting': the pid and start
 * time match but its executable can no longer be read (it is past releasing its memory, not yet a
 * zombie: never signalled, but waited for); 'unverified': the pid and start time match but the
 * record names no executable to compare.
 */
async function identify(h: HelperRecord): Promise<'ours' | 'gone' | 'exiting' | 'unverified'> {
  if (!(await processRuns(h.pid, h.startTime))) return 'gone';
  if (h.exe === undefined) return 'unverified';
  const exe = await processExe(h.pid);
  if (exe === null) return (await processRuns(h.pid, h.startTime)) ? 'exiting' : 'gone';
  return exe === h.exe.replace(/ \(deleted\)$/, '') ? 'ours' : 'gone';
}

/** True if the recorded helper still runs: same pid, start time and executable. */
export async function isRecordedProcess(h: HelperRecord): Promise<boolean> {
  return (await identify(h)) === 'ours';
}

async function gone(h: HelperRecord, ms: number): Promise<boolean> {
  const end = Date.now() + ms;
  // No pidfd in Node: poll /proc, quickly at first (helpers exit within milliseconds of their unmount).
  for (let step = 5; ; step = Math.min(step * 2, 100)) {
    if ((await identify(h)) === 'gone') return true;
    const left = end - Date.now();
    if (left <= 0) return false;
    await new Promise((r) => setTimeout(r, Math.min(step, left)));
  }
}

/**
 * Stops a helper another process started: if it still runs (pid, start time and executable as
 * recorded), waits for it, then SIGTERM, then SIGKILL, as HelperProcess.stop; each signal only
 * right after checking again. A helper recorded without its executable is never signalled: if it
 * does not exit by itself, ERR_HELPER_FAILED says so. Returns what it took.
 */
export async function stopRecordedProcess(h: HelperRecord, timings: StopTimings = {}): Promise<'gone' | 'exited' | 'terminated' | 'killed'> {
  const t = { ...DEFAULT_STOP, ...timings };
  const { program, pid } = h;
  const first = await identify(h);
  if (first === 'gone') return 'gone';
  if (await gone(h, t.graceMs)) return 'exited';
  if (first === 'unverified')
    throw new ImgmountError('ERR_HELPER_FAILED', `${program} (pid ${pid}) still runs ${t.graceMs} ms after its unmount; its record names no executable, so it is not signalled`, {
      details: { program, pid },
    });
  const signal = async (sig: NodeJS.Signals): Promise<boolean> => {
    if ((await identify(h)) !== 'ours') return false;
    try {
      process.kill(pid, sig);
    } catch {
      // exited meanwhile
    }
    return true;
  };
  const stuck = (after: string): ImgmountError =>
    new ImgmountError('ERR_HELPER_FAILED', `${program} (pid ${pid}) did not exit ${after}`, { details: { program, pid } });
  // Not ours to signal any more, but maybe still on its way out: stopped only once it is gone.
  if (!(await signal('SIGTERM'))) {
    if (await gone(h, t.termMs + t.killMs)) return 'exited';
    throw stuck(`${t.graceMs + t.termMs + t.killMs} ms after its unmount`);
  }
  if (await gone(h, t.termMs)) return 'terminated';
  if (!(await signal('SIGKILL'))) {
    if (await gone(h, t.killMs)) return 'terminated';
    throw stuck(`${t.termMs + t.killMs} ms after SIGTERM`);
  }
  if (await gone(h, t.killMs)) return 'killed';
  throw stuck(`${t.killMs} ms after SIGKILL`);
}
