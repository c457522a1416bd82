// A program started without forking Node: posix_spawn on a pool thread (vfork semantics: no
// copy of the heap's page tables, which libuv's fork makes on the JS thread, 0.8-1.5 ms here
// and more the bigger the process), watched through a pidfd on the event loop, signalled
// through the pidfd (never another process that got its pid). It looks like the part of a
// ChildProcess the library uses: pid, exitCode, signalCode, kill(), ref()/unref(), and 'exit'
// then 'close' events; the output pipes asked for (`pipes`) are sockets on the event loop, and
// 'close' waits for them to end, as a ChildProcess's does.

import { EventEmitter } from 'node:events';
import { Socket } from 'node:net';
import { constants as osConstants } from 'node:os';
import type { Readable } from 'node:stream';
import { finished } from 'node:stream/promises';
import { native, binding } from '../native/binding';
import { isSystemError } from '../util/system-error';

export interface NativeSpawnOptions {
  /** fds the program gets at 0, 1, 2, 3, ... (null: /dev/null). */
  fds: ReadonlyArray<number | null>;
  env: NodeJS.ProcessEnv;
  /** Its own session and process group (setsid). */
  setsid: boolean;
  /** Child fds (their `fds` entry null) whose output comes back through a pipe: NativeChild.output(fd). */
  pipes?: readonly number[];
  /**
   * If it cannot be watched (pidfd_open fails once it runs), wait for it to end instead of
   * killing it: for a one-shot program, whose outcome only its end tells.
   */
  waitUnwatched?: boolean;
}

const signalNames = new Map<number, NodeJS.Signals>(Object.entries(osConstants.signals).map(([name, n]) => [n, name as NodeJS.Signals]));

export class NativeChild extends EventEmitter {
  readonly stdin = null;
  readonly stdout = null;
  readonly stderr = null;
  readonly stdio = [] as const;
  exitCode: number | null = null;
  signalCode: NodeJS.Signals | null = null;
  readonly #watcher: InstanceType<ReturnType<typeof binding>['ProcessWatcher']> | undefined;
  readonly #outputs = new Map<number, Socket>();

  /** @internal `pipes`: [child fd, read end] pairs; `exited`: it was waited for (pidfd -1). */
  constructor(
    readonly pid: number,
    pidfd: number,
    pipes: ReadonlyArray<readonly [number, number]> = [],
    exited?: { code: number | null; signal: number | null },
  ) {
    super();
    // Read on the event loop's epoll (uv_pipe_open makes the fd non-blocking): no pool thread.
    for (const [childFd, fd] of pipes) {
      const output = new Socket({ fd, readable: true, writable: false });
      output.on('error', () => undefined); // a failed read ends the output; the exit status still tells
      this.#outputs.set(childFd, output);
    }
    const onExit = (code: number | null, signal: number | null): void => {
      this.exitCode = code;
      this.signalCode = signal === null ? null : (signalNames.get(signal) ?? null);
      this.#watcher?.close(); // it closed the pidfd once it reaped the process
      this.emit('exit', this.exitCode, this.signalCode);
      void Promise.allSettled([...this.#outputs.values()].map((o) => finished(o))).then(() => this.emit('close', this.exitCode, this.signalCode));
    };
    if (exited) {
      // Reaped already: told once the caller has had the chance to listen, as a watched exit would be.
      this.#watcher = undefined;
      setImmediate(() => onExit(exited.code, exited.signal));
    } else {
      this.#watcher = new (binding().ProcessWatcher)(pidfd, pid, onExit);
    }
  }

  /** The read end of the pipe the program has at `childFd` (asked for in `pipes`). */
  output(childFd: number): Readable | undefined {
    return this.#outputs.get(childFd);
  }

  /** Sends `signal` through the pidfd; false once it has exited. */
  kill(signal: NodeJS.Signals | number = 'SIGTERM'): boolean {
    if (this.exitCode !== null || this.signalCode !== null) return false;
    const n = typeof signal === 'number' ? signal : osConstants.signals[signal];
    return this.#watcher?.kill(n) ?? false;
  }

  ref(): void {
    this.#watcher?.ref();
  }

  unref(): void {
    this.#watcher?.unref();
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
    const pipes = o.pipes ?? [];
    const r = await native((b) =>
      b.spawnProgram({ file, argv: [file, ...args], envp, fds: o.fds.map((fd) => fd ?? -1), setsid: o.setsid, pipes: [...pipes], waitUnwatched: o.waitUnwatched ?? false }),
    );
    return new NativeChild(
      r.pid,
      r.pidfd,
      pipes.map((childFd, i) => [childFd, r.pipes[i]!] as const),
      r.exited,
    );
  } catch (err) {
    // The program was stopped and reaped already: without a pidfd it could not be watched.
    if (isSystemError(err, 'ENOSYS', 'pidfd_open')) pidfds = Promise.resolve(false);
    throw err;
  }
}
