// Gates and helpers for tests that use the real kernel (loop devices, mounts, namespaces).
// A gate skips only where the machine truly lacks the feature, and says why.
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { repoRoot } from './paths';
import { skip } from './skip';

function lacking(): string | null {
  if (process.geteuid?.() !== 0) return 'not running as root';
  if (!fs.existsSync('/dev/loop-control')) return 'no /dev/loop-control (loop driver missing)';
  return null;
}

/** The kernel's initial mount namespace (PROC_MNT_INIT_INO in include/linux/proc_ns.h). */
const INIT_MNT_NS = 'mnt:[4026531832]';

/**
 * Whether a mount made here could stay on the host: we are in the kernel's initial mount
 * namespace or share pid 1's (which may be unreadable even to root), or our "/" still
 * propagates mounts to a peer group (mountinfo's "shared:N"), as it does until
 * `unshare --propagation private`.
 */
export function mountsReachHost(): boolean {
  const own = fs.readlinkSync('/proc/self/ns/mnt');
  if (own === INIT_MNT_NS) return true;
  try {
    if (own === fs.readlinkSync('/proc/1/ns/mnt')) return true;
  } catch {
    // pid 1 not visible: judge by propagation below
  }
  const rootLine = fs
    .readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .find((l) => l.split(' ')[4] === '/');
  return rootLine !== undefined && /\sshared:\d+/.test(rootLine.split(' - ')[0]!);
}

/**
 * For a describe() that mounts: skips (with the reason printed) without root or loop
 * devices, and refuses to run in the host's mount namespace, where a crash could leave
 * mounts behind: run under `unshare -m --propagation private`.
 */
export function requireKernel(ctx: Mocha.Context): void {
  const why = lacking();
  if (why) skip(ctx, why);
  if (mountsReachHost() && process.env.IMGMOUNT_TEST_HOST_NS !== '1')
    throw new Error('kernel tests mount: run them in a private mount namespace (unshare -m --propagation private ...), or set IMGMOUNT_TEST_HOST_NS=1');
}

export function userNamespacesLacking(): string | null {
  try {
    if (Number(fs.readFileSync('/proc/sys/user/max_user_namespaces', 'utf8')) === 0) return 'user namespaces disabled (max_user_namespaces=0)';
  } catch {
    return 'no user namespace support (/proc/sys/user/max_user_namespaces missing)';
  }
  return null;
}

export function requireUserNamespaces(ctx: Mocha.Context): void {
  const why = userNamespacesLacking();
  if (why) skip(ctx, why);
}

/** The compiled library, for child processes. */
export const distLib = path.join(repoRoot, 'dist', 'lib');
export const childScript = path.join(repoRoot, 'dist', 'test', 'support', 'loop-child.js');

export interface Child {
  proc: ChildProcess;
  /** Resolves with the next JSON line the child prints. */
  next(): Promise<Record<string, unknown>>;
  /** Closes the child's stdin (it releases and exits) and waits for the exit code. */
  finish(): Promise<number | null>;
}

export interface ChildOptions {
  /** The compiled script to run (default test/support/loop-child.js). */
  script?: string;
  /** Its whole environment (default: ours). */
  env?: NodeJS.ProcessEnv;
  cwd?: string;
}

/** Children of startChild() still running: a test that failed before finishing its child must not leave it holding loop devices (or keep mocha from exiting). */
const liveChildren = new Set<ChildProcess>();

/** SIGKILLs every startChild() child still running and waits for it; returns how many there were. */
export async function killLiveChildren(): Promise<number> {
  const left = [...liveChildren];
  await Promise.all(left.map((c) => stopHolder(c)));
  liveChildren.clear();
  return left.length;
}

/** Starts test/support/loop-child.ts (or `options.script`) with one JSON command, optionally under a wrapper command. */
export function startChild(command: Record<string, unknown>, wrapper: string[] = [], options: ChildOptions = {}): Child {
  const argv = [...wrapper, process.execPath, options.script ?? childScript, JSON.stringify(command)];
  const proc = spawn(argv[0]!, argv.slice(1), {
    stdio: ['pipe', 'pipe', 'inherit'],
    ...(options.env ? { env: options.env } : {}),
    ...(options.cwd ? { cwd: options.cwd } : {}),
  });
  liveChildren.add(proc);
  proc.once('exit', () => liveChildren.delete(proc));
  const lines: Array<Record<string, unknown>> = [];
  const waiters: Array<(v: Record<string, unknown>) => void> = [];
  let buf = '';
  proc.stdout!.setEncoding('utf8');
  proc.stdout!.on('data', (d: string) => {
    buf += d;
    let i;
    while ((i = buf.indexOf('\n')) >= 0) {
      const line = JSON.parse(buf.slice(0, i)) as Record<string, unknown>;
      buf = buf.slice(i + 1);
      const w = waiters.shift();
      if (w) w(line);
      else lines.push(line);
    }
  });
  const exited = new Promise<number | null>((r) => proc.once('exit', (code) => r(code)));
  return {
    proc,
    next: () =>
      new Promise((resolve, reject) => {
        const l = lines.shift();
        if (l) return resolve(l);
        waiters.push(resolve);
        exited.then((code) => reject(new Error(`child exited (${code}) before answering`)));
      }),
    finish: async () => {
      proc.stdin!.end();
      return exited;
    },
  };
}

/** Waits until `pred` holds (polling), or fails after `ms`: for kernel state that settles asynchronously. */
export async function eventually(pred: () => boolean | Promise<boolean>, ms = 3000, what = 'condition'): Promise<void> {
  const end = Date.now() + ms;
  for (;;) {
    if (await pred()) return;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Starts `unshare <flags> sleep` and waits until it is in its new mount namespace. */
export async function startNamespaceHolder(flags: string[]): Promise<ChildProcess> {
  const child = spawn('unshare', [...flags, 'sleep', '600'], { stdio: 'ignore' });
  const own = fs.readlinkSync('/proc/self/ns/mnt');
  await eventually(() => {
    try {
      return fs.readlinkSync(`/proc/${child.pid}/ns/mnt`) !== own && fs.readlinkSync(`/proc/${child.pid}/exe`).endsWith('sleep');
    } catch {
      return false;
    }
  }, 5000, 'unshare to enter its namespaces');
  return child;
}

/** Kills a namespace holder and waits for it. */
export async function stopHolder(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const gone = new Promise((r) => child.once('exit', r));
  child.kill('SIGKILL');
  await gone;
}
