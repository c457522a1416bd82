// A program started without forking Node: posix_spawn on a pool thread (vfork semantics: no
// copy of the heap's page tables, which libuv's fork makes on the JS thread, 0.8-1.5 ms here
// and more the bigger the process), watched through a pidfd on the event loop, signalled
// through the pidfd (never another process that got its pid). It looks like the part of a
// ChildProcess the library uses: pid, exitCode, signalCode, kill(), ref()/unref(), and 'exit'
// then 'close' events (it has no pipes: stdio is what the caller passed, or /dev/null).

import { EventEmitter } from 'node:events';
import { constants as osConstants } from 'node:os';
import { native, binding } from '../native/binding';
import { isSystemError } from '../util/system-error';

export interface NativeSpawnOptions {
  /** fds the program gets at 0, 1, 2, 3, ... (null: /dev/null). */
  fds: ReadonlyArray<number | null>;
  env: NodeJS.ProcessEnv;
  /** Its own session and process group (setsid). */
  setsid: boolean;
}

const signalNames = new Map<number, NodeJS.Signals>(Object.entries(osConstants.signals).map(([name, n]) => [n, name as NodeJS.Signals]));

export class NativeChild extends EventEmitter {
  readonly stdin = null;
  readonly stdout = null;
  readonly stderr = null;
  readonly stdio = [] as const;
  exitCode: number | null = null;
  signalCode: NodeJS.Signals | null = null;
  readonly #watcher: InstanceType<ReturnType<typeof binding>['ProcessWatcher']>;

  /** @internal */
  constructor(
    readonly pid: number,
    pidfd: number,
  ) {
    super();
    this.#watcher = new (binding().ProcessWatcher)(pidfd, pid, (code, signal) => {
      this.exitCode = code;
      this.signalCode = signal === null ? null : (signalNames.get(signal) ?? null);
      this.#watcher.close(); // it closed the pidfd once it reaped the process
      this.emit('exit', this.exitCode, this.signalCode);
      this.emit('close', this.exitCode, this.signalCode);
    });
  }

  /** Sends `signal` through the pidfd; false once it has exited. */
  kill(signal: NodeJS.Signals | number = 'SIGTERM'): boolean {
    if (this.exitCode !== null || this.signalCode !== null) return false;
    const n = typeof signal === 'number' ? signal : osConstants.signals[signal];
    return this.#watcher.kill(n);
  }

  ref(): void {
    this.#watcher.ref();
  }

  unref(): void {
    this.#watcher.unref();
  }
}

let pidfds: Promise<boolean> | undefined;

/**
 * Whether programs can be started this way here: pidfd_open works (Linux 5.3, no seccomp
 * filter against it). Probed once, before any spawn; callers use child_process where not.
 */
export function nativeSpawnAvailable(): Promise<boolean> {
  pidfds ??= native((b) => b.pidfdProbe()).then(
    (errno) => errno === 0,
    () => false,
  );
  return pidfds;
}

/** Starts `file` (an absolute path) with `args` as the options say; resolves once it runs (its exec succeeded). */
export async function spawnNative(file: string, args: readonly string[], o: NativeSpawnOptions): Promise<NativeChild> {
  const envp = Object.entries(o.env)
    .filter((e): e is [string, string] => e[1] !== undefined)
    .map(([k, v]) => `${k}=${v}`);
  try {
    const r = await native((b) => b.spawnProgram({ file, argv: [file, ...args], envp, fds: o.fds.map((fd) => fd ?? -1), setsid: o.setsid }));
    return new NativeChild(r.pid, r.pidfd);
  } catch (err) {
    // The program was stopped and reaped already: without a pidfd it could not be watched.
    if (isSystemError(err, 'ENOSYS', 'pidfd_open')) pidfds = Promise.resolve(false);
    throw err;
  }
}
