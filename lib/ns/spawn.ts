// Starting programs inside other namespaces (spawnInNamespaces), or here with what
// child_process cannot do before the exec (spawnHere), through the single-threaded helper
// (lib/ns/helper.ts): the Node thread never changes namespace.

import type { ChildProcess } from 'node:child_process';
import { invalidArgType, throwIfAborted } from '../errors';
import { signalOf } from '../util/abort';
import { pathArg } from '../util/args';
import { api } from '../util/stack';
import { execHelper, type HelperCall, type HelperStdio } from './helper';
import { describeTarget, openTarget, type NamespaceTarget } from './namespace';

export interface SpawnInNamespacesOptions {
  /** stdio of the program (default ['ignore', 'pipe', 'pipe']). */
  stdio?: [HelperStdio, HelperStdio, HelperStdio];
  /** Parent fds the program inherits, at fds 3, 4, ... in this order (e.g. a /dev/fuse fd). */
  fds?: number[];
  env?: NodeJS.ProcessEnv;
  /** Start it in a session (and process group) of its own. */
  setsid?: boolean;
  /** The signal it gets when this process dies (PR_SET_PDEATHSIG). */
  deathSignal?: 'SIGTERM' | 'SIGKILL';
  /** Aborting before the program started kills the helper; afterwards the program is yours. */
  signal?: AbortSignal;
}

/**
 * Starts `file` (looked up in PATH inside the mount namespace, if one is joined) with `args`
 * inside the namespaces of `ns`, and resolves once it is running (exec succeeded). With a
 * mount namespace, the program, its loader and its libraries are that namespace's own (a
 * container's): this runs the container's program, never one of yours, so do not use it to
 * start a privileged helper there (imgmount serves its mounts from its own namespace and
 * moves them in instead). A failure
 * to join or to exec rejects with errno and the failing step. Its working directory is the
 * namespace's root. The program may already have exited when this resolves: wait for it with
 * `trackExit(child)` (lib/util/child-exit), never with a late 'exit'/'close' listener.
 */
export function spawnInNamespaces(ns: NamespaceTarget, file: string, args: readonly string[] = [], options: SpawnInNamespacesOptions = {}): Promise<ChildProcess> {
  return api(spawnInNamespaces, () => spawnInNamespacesImpl(ns, file, args, options));
}

/** The helper's exec of `file` as the options ask, in whichever namespaces the caller adds. */
function execCall(file: string, args: readonly string[], options: SpawnInNamespacesOptions): HelperCall {
  return {
    op: 'exec',
    args: [file, ...args],
    passFds: options.fds ?? [],
    stdio: options.stdio ?? ['ignore', 'pipe', 'pipe'],
    env: options.env ?? process.env,
    setsid: options.setsid ?? false,
    ...(options.deathSignal ? { deathSignal: options.deathSignal } : {}),
    path: file,
  };
}

async function spawnInNamespacesImpl(ns: NamespaceTarget, file: string, args: readonly string[] = [], options: SpawnInNamespacesOptions = {}): Promise<ChildProcess> {
  pathArg('file', file);
  if (!Array.isArray(args) || args.some((a) => typeof a !== 'string')) throw invalidArgType('args', 'an array of strings', args);
  const signal = signalOf(options.signal);
  throwIfAborted(signal);
  const opened = await openTarget(ns);
  try {
    return await execHelper(
      { ...execCall(file, args, options), userns: opened.userns?.fd ?? null, mntns: opened.mntns?.fd ?? null, namespaceProgram: true, where: describeTarget(ns) },
      signal,
    );
  } finally {
    // The helper has its own copies (inherited); ours are no longer needed.
    await opened.close();
  }
}

/**
 * Starts `file` (an absolute path of our own filesystem) in no other namespace, through the
 * namespace helper, for what child_process cannot do before the exec: a session of its own
 * and a death signal (PR_SET_PDEATHSIG). Resolves once it runs, like spawnInNamespaces.
 */
export function spawnHere(file: string, args: readonly string[] = [], options: SpawnInNamespacesOptions = {}): Promise<ChildProcess> {
  return api(spawnHere, async () => {
    pathArg('file', file);
    const signal = signalOf(options.signal);
    throwIfAborted(signal);
    return execHelper({ ...execCall(file, args, options), userns: null, mntns: null, where: 'here' }, signal);
  });
}
