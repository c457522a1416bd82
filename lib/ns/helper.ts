// Runs the single-threaded helper (native/helper/nsenter.c) as a process of its own, so the
// Node thread never changes namespace. One-shot operations start it with posix_spawn off the
// JS thread (lib/ns/native-child.ts) where pidfds work; `exec`, and hosts without pidfds, use
// child_process (a fork of this process on the JS thread: 0.8-1.5 ms of event loop each).
//
// Child fd layout: 0-2 stdio, 3.. the fds the operation needs (`passFds`, in order), then the
// result pipe, then the user and mount namespace fds. The helper joins user then mount
// namespace, does its one operation and writes one line on the result pipe: "OK" or
// "ERR <errno> <step>" (with --test-faults, "H <step> <hits>" lines come first; takeHelperHits
// in lib/native/faults.ts counts and removes them). The pipe is close-on-exec: for `exec`, EOF
// without a line means the program is running.

import { spawn, type ChildProcess } from 'node:child_process';
import { PassThrough, type Readable } from 'node:stream';
import { ImgmountError, SystemError } from '../errors';
import { abortError } from '../util/abort';
import { debug } from '../util/debug';
import { callerStack } from '../util/stack';
import { helperPath, trustedHelperPath } from '../native/binding';
import { helperFaultArming, takeHelperHits } from '../native/faults';
import { trackExit } from '../util/child-exit';
import { nativeSpawnAvailable, spawnNative, type NativeChild } from './native-child';

const HELPER_ENV: NodeJS.ProcessEnv = { PATH: '/usr/sbin:/usr/bin:/sbin:/bin', LC_ALL: 'C' };

export type HelperStdio = 'ignore' | 'pipe' | 'inherit' | number;

export type HelperOp = 'exec' | 'move-mount' | 'mount' | 'umount' | 'userns-hold';

export interface HelperCall {
  op: HelperOp;
  /** Operation arguments; refer to passed fds by their child numbers (`childFd(i)`). */
  args: string[];
  userns?: number | null;
  mntns?: number | null;
  /** Parent fds placed at child fds 3, 4, ... in this order. */
  passFds?: number[];
  /** For exec: stdio of the program (default ['ignore', 'pipe', 'pipe']). */
  stdio?: HelperStdio[];
  env?: NodeJS.ProcessEnv;
  /** For exec: setsid() before exec'ing the program. */
  setsid?: boolean;
  /** For exec: the signal the program gets when this process dies (PR_SET_PDEATHSIG). */
  deathSignal?: 'SIGTERM' | 'SIGKILL';
  /**
   * For exec with a mount namespace: the caller knows the program (and its loader and
   * libraries) comes from that namespace's filesystem. Without it the helper refuses.
   */
  namespaceProgram?: boolean;
  /** How long the helper may take (one-shot operations; for exec, until the exec). Default HELPER_TIMEOUT_MS. */
  timeoutMs?: number;
  /** Where path arguments came from, for error messages. */
  path?: string;
  dest?: string;
  /** Words for error messages: "in the namespaces of pid 42". */
  where?: string;
}

/** Child fd number of the i-th passed fd. */
export function childFd(i: number): number {
  return 3 + i;
}

export interface HelperResult {
  ok: boolean;
  errno?: number;
  step?: string;
  messages: string[];
}

/**
 * The helper's report: "OK" or "ERR <errno> <step>"; anything else (nothing, for an exec that
 * succeeded) is null. "K <message>" lines after ERR are taken as kernel messages, though the
 * helper writes none (its mount is mount(2); fs-context messages come from the addon's mounts).
 */
export function parseHelperResult(text: string): HelperResult | null {
  const lines = text.split('\n').filter((l) => l.length > 0);
  if (lines.length === 0) return null;
  if (lines[0] === 'OK') return { ok: true, messages: [] };
  const m = /^ERR (\d+) (\S+)$/.exec(lines[0]!);
  if (!m) return null;
  const messages = lines.slice(1).filter((l) => l.startsWith('K ')).map((l) => l.slice(2));
  return { ok: false, errno: Number(m[1]), step: m[2]!, messages };
}

function layout(call: HelperCall): { stdio: HelperStdio[]; argv: string[]; resultFd: number; faultEnv: Record<string, string> | undefined } {
  const pass = call.passFds ?? [];
  const base: HelperStdio[] = call.stdio ?? (call.op === 'exec' ? ['ignore', 'pipe', 'pipe'] : ['ignore', 'ignore', 'pipe']);
  const stdio: HelperStdio[] = [...base.slice(0, 3), ...pass];
  const resultFd = stdio.length;
  stdio.push('pipe');
  const argv = ['--result', String(resultFd)];
  if (call.setsid) argv.push('--setsid');
  if (call.namespaceProgram) argv.push('--namespace-program');
  if (call.deathSignal) argv.push('--pdeathsig', call.deathSignal === 'SIGKILL' ? '9' : '15');
  if (call.userns != null) {
    argv.push('--userns', String(stdio.length));
    stdio.push(call.userns);
  }
  if (call.mntns != null) {
    argv.push('--mntns', String(stdio.length));
    stdio.push(call.mntns);
  }
  const faults = helperFaultArming();
  if (faults) argv.push(faults.flag);
  argv.push(call.op, ...call.args);
  return { stdio, argv, resultFd, faultEnv: faults?.env };
}

function failure(call: HelperCall, r: HelperResult): Error {
  const sys = new SystemError({
    errno: r.errno!,
    syscall: r.step!,
    ...(call.path !== undefined ? { path: call.path } : {}),
    ...(call.dest !== undefined ? { dest: call.dest } : {}),
    ...(r.messages.length ? { kernelMessages: r.messages } : {}),
    ...(call.where ? { context: call.where } : {}),
  });
  if (r.step!.startsWith('setns') || r.step!.startsWith('unshare'))
    return new ImgmountError('ERR_NAMESPACE', `cannot enter the namespace${call.where ? ` (${call.where})` : ''}: ${sys.message}`, {
      cause: sys,
      details: { errno: sys.errno, syscall: sys.syscall },
    });
  return sys;
}

/** The helper's stderr as it comes (its first 4 KiB), for the error if it fails without a result. */
function collectStderr(stream: Readable | null | undefined): () => string {
  let err = '';
  stream?.setEncoding('utf8');
  stream?.on('data', (d: string) => (err.length < 4096 ? (err += d) : undefined));
  return () => err.trim();
}

function spawnHelper(exe: string, call: HelperCall): { child: ChildProcess; result: Readable; stderr: () => string } {
  const { stdio, argv, resultFd, faultEnv } = layout(call);
  debug('helper: %s %s', exe, argv.join(' '));
  // One-shot operations get a fixed environment (nothing of the caller's, no LD_PRELOAD);
  // exec passes on what the caller chose for its program. Faults a test armed in this process
  // are added (the helper removes them before it execs anything).
  const env = call.env ?? (call.op === 'exec' ? process.env : HELPER_ENV);
  const child = spawn(exe, argv, { stdio, env: faultEnv ? { ...env, ...faultEnv } : env });
  if (call.op === 'exec') keepOutput(child);
  trackExit(child); // an exec'd program may be done before the caller listens
  const result = child.stdio[resultFd] as Readable;
  return { child, result, stderr: collectStderr(call.op === 'exec' ? null : (child.stdio[2] as Readable | null)) };
}

/**
 * A one-shot operation's helper started by posix_spawn, its stderr and result read from pipes;
 * undefined where the layout asks for what only child_process gives (inherited stdio).
 */
async function spawnHelperNative(exe: string, call: HelperCall): Promise<{ child: NativeChild; result: Readable; stderr: () => string } | undefined> {
  const { stdio, argv, resultFd, faultEnv } = layout(call);
  if (stdio.some((s) => s === 'inherit')) return undefined;
  const fds = stdio.map((s) => (typeof s === 'number' ? s : null));
  const pipes = stdio.flatMap((s, i) => (s === 'pipe' ? [i] : []));
  debug('helper (posix_spawn): %s %s', exe, argv.join(' '));
  const env = call.env ?? HELPER_ENV;
  const child = await spawnNative(exe, argv, { fds, env: faultEnv ? { ...env, ...faultEnv } : env, setsid: false, pipes, waitUnwatched: true });
  return { child, result: child.output(resultFd)!, stderr: collectStderr(child.output(2)) };
}

/** posix_spawn for one-shot operations where it works; child_process otherwise (see the file comment). */
async function startOneShot(exe: string, call: HelperCall): Promise<{ child: ChildProcess | NativeChild; result: Readable; stderr: () => string }> {
  if (await nativeSpawnAvailable()) {
    try {
      const started = await spawnHelperNative(exe, call);
      if (started) return started;
    } catch (err) {
      if (await nativeSpawnAvailable()) throw err; // a real failure, not a missing pidfd
    }
  }
  return spawnHelper(exe, call);
}

/**
 * An exec'd program may finish before the caller gets the ChildProcess, and Node then drains
 * (discards) stdout/stderr nobody listens to. Read them from the start into PassThrough
 * streams that hold the output until the caller reads it, offered as `child.stdout` and
 * `child.stderr`. (`child.stdio` keeps the original pipes: Node's exit-time drain walks that
 * array, and would drain the kept output too if it were there.)
 */
function keepOutput(child: ChildProcess): void {
  for (const [fd, name] of [
    [1, 'stdout'],
    [2, 'stderr'],
  ] as const) {
    const original = child.stdio[fd] as Readable | null;
    if (!original) continue;
    const kept = new PassThrough();
    original.pipe(kept);
    Object.defineProperty(child, name, { value: kept, configurable: true, writable: true });
  }
}

function helperDied(call: HelperCall, code: number | null, sig: NodeJS.Signals | null, stderr: string, cause?: unknown): ImgmountError {
  const how = cause ? (cause as Error).message : sig ? `killed by ${sig}` : `exit status ${code}`;
  return new ImgmountError(
    'ERR_HELPER_FAILED',
    `namespace helper ${helperPath()} (${call.op}) failed without a result: ${how}${stderr ? `: ${stderr}` : ''}` +
      (cause && (cause as NodeJS.ErrnoException).code === 'ENOENT'
        ? ' (it ships next to the addon: reinstall imgmount, or build both with `npm rebuild imgmount --build-from-source`; or set IMGMOUNT_HELPER_PATH)'
        : ''),
    { cause, details: { op: call.op, code, signal: sig } },
  );
}

/** How long one helper operation may take (a mount or unmount on a hung filesystem may never return). */
export const HELPER_TIMEOUT_MS = 10_000;

function helperTimedOut(call: HelperCall, ms: number): ImgmountError {
  return new ImgmountError('ERR_HELPER_TIMEOUT', `namespace helper (${call.op}${call.where ? ` ${call.where}` : ''}) did not finish within ${ms} ms, so it was killed`, {
    details: { op: call.op, timeoutMs: ms },
  });
}

/**
 * Runs a one-shot operation (move-mount, mount, umount) to completion. It is not killed when
 * a caller aborts: the operation is short and must finish so that it can be undone. It is
 * killed if it takes longer than `call.timeoutMs` (default HELPER_TIMEOUT_MS): ERR_HELPER_TIMEOUT.
 */
export async function runHelper(call: HelperCall): Promise<void> {
  const reject0 = callerStack(runHelper);
  const exe = await trustedHelperPath().catch((e: Error) => Promise.reject(reject0(e)));
  let started: Awaited<ReturnType<typeof startOneShot>>;
  try {
    started = await startOneShot(exe, call);
  } catch (e) {
    throw reject0(helperDied(call, null, null, '', e));
  }
  return new Promise((resolve, rejectRaw) => {
    const reject = (e: Error): void => rejectRaw(reject0(e));
    const { child, result, stderr } = started;
    let text = '';
    let spawnError: unknown;
    let timedOut = false;
    const ms = call.timeoutMs ?? HELPER_TIMEOUT_MS;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, ms);
    child.once('close', () => clearTimeout(timer));
    result.setEncoding('utf8');
    result.on('data', (d: string) => (text += d));
    child.on('error', (e) => {
      spawnError = e;
      // Never started (no such helper...): there will be no 'close' to wait for.
      if (child.pid === undefined) reject(helperDied(call, null, null, '', e));
    });
    child.on('close', (code, sig) => {
      const r = parseHelperResult(takeHelperHits(text));
      if (r?.ok) return resolve();
      if (r) return reject(failure(call, r));
      if (timedOut) return reject(helperTimedOut(call, ms));
      reject(helperDied(call, code, sig, stderr(), spawnError));
    });
  });
}

/**
 * Starts `exec` through the helper and resolves with the running program once the exec
 * succeeded (result pipe closed without a report). Aborting before then kills the helper.
 */
export async function execHelper(call: HelperCall, signal?: AbortSignal): Promise<ChildProcess> {
  const restack = callerStack(execHelper);
  const exe = await trustedHelperPath().catch((e: Error) => Promise.reject(restack(e)));
  return new Promise((resolve, rejectRaw) => {
    const reject = (e: Error): void => rejectRaw(restack(e));
    if (signal?.aborted) return reject(abortError(signal));
    const { child, result } = spawnHelper(exe, call);
    let text = '';
    let settled = false;
    const onAbort = (): void => {
      if (settled) return;
      settled = true;
      child.kill('SIGKILL');
      reject(abortError(signal!));
    };
    signal?.addEventListener('abort', onAbort, { once: true });
    // Until the exec is reported: joining a namespace or the exec itself may never return.
    const ms = call.timeoutMs ?? HELPER_TIMEOUT_MS;
    const timer = setTimeout(() => {
      if (settled) return;
      settled = true;
      signal?.removeEventListener('abort', onAbort);
      child.kill('SIGKILL');
      reject(helperTimedOut(call, ms));
    }, ms);
    const done = (fn: () => void): void => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      if (settled) return;
      settled = true;
      fn();
    };
    result.setEncoding('utf8');
    result.on('data', (d: string) => (text += d));
    child.once('error', (e) => done(() => reject(helperDied(call, null, null, '', e))));
    result.once('end', () => {
      const r = parseHelperResult(takeHelperHits(text));
      if (!r) return done(() => resolve(child));
      // The helper reported a failure and exits; let it be reaped before rejecting.
      child.once('close', () => done(() => reject(r.ok ? helperDied(call, 0, null, 'unexpected OK') : failure(call, r))));
      if (child.exitCode !== null || child.signalCode !== null) done(() => reject(r.ok ? helperDied(call, 0, null, 'unexpected OK') : failure(call, r)));
    });
  });
}
