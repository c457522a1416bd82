// Mounting into (and unmounting from) other namespaces.
//
// The mount is built on the host as a detached mount (loop attach + fsmount, ID-mapped if
// asked) and the helper, after joining the user and then the mount namespace, moves it onto
// the target with move_mount. Where the new mount API is missing, the helper instead
// mount(2)s /proc/self/fd/N of our loop device fd inside the namespace. Either way the Node
// thread never changes namespace and the loop device is auto-cleared with the mount. The
// namespace primitives (namespace fds, the helper) are lib/ns, below this.

import { constants as osConstants } from 'node:os';
import { RetryableOnce } from '../util/once';
import { closeFd } from '../io/fd';
import { ImgmountError, invalidArgType, throwIfAborted } from '../errors';
import { attachLoop } from '../loop/attach';
import { checkSource, type LoopSource } from '../loop/context';
import { LoopDevice } from '../loop/device';
import { pathArg } from '../util/args';
import { debug } from '../util/debug';
import { api } from '../util/stack';
import { childFd, runHelper } from '../ns/helper';
import { describeTarget, openTarget, type NamespaceTarget, type OpenedTarget } from '../ns/namespace';
import { MNT_DETACH, MNT_FORCE, umountFlagsToNumber, type UmountFlags } from './flags';
import type { MountMethod } from './mount';
import { buildMount, resolvePartitionOptions, type MountPartitionOptions } from './partition';
import { resolveMountApi } from './new-api';
import { mapMountError } from './errors';

export interface NamespaceUnmountOptions {
  lazy?: boolean;
  force?: boolean;
  signal?: AbortSignal;
}

/**
 * A partition mounted inside other namespaces. close() (or `await using`) undoes it there:
 * idempotent, and a mount already gone counts as closed; unmount(options) is the same with
 * MNT_DETACH or MNT_FORCE, and reports ERR_NOT_MOUNTED when it was gone. The
 * handle does not hold the namespaces open (a container that exits takes its mounts, and
 * their loop devices, with it): unmount() opens them again from the same NamespaceTarget, so
 * NamespaceFds given by the caller must still be open then.
 */
export class NamespaceMount implements AsyncDisposable {
  /** The mount point, as seen inside the namespace. */
  readonly target: string;
  readonly fstype: string;
  readonly method: MountMethod;
  readonly loopDevice: string | null;
  readonly idmapped: boolean;
  readonly #ns: NamespaceTarget;
  /** The mount's id (statx), so that unmount() takes exactly it: 0 where unknown. */
  readonly #mountId: number | bigint;
  readonly #release = new RetryableOnce();

  /** @internal */
  constructor(init: { target: string; fstype: string; method: MountMethod; loopDevice: string | null; idmapped: boolean; ns: NamespaceTarget; mountId?: number | bigint }) {
    this.#mountId = init.mountId ?? 0;
    this.target = init.target;
    this.fstype = init.fstype;
    this.method = init.method;
    this.loopDevice = init.loopDevice;
    this.idmapped = init.idmapped;
    this.#ns = init.ns;
  }

  get unmounted(): boolean {
    return this.#release.started;
  }

  /** True once close() or unmount() was called (and did not fail). */
  get closed(): boolean {
    return this.#release.started;
  }

  unmount(options: NamespaceUnmountOptions = {}): Promise<void> {
    const flags = (options.lazy ? MNT_DETACH : 0) | (options.force ? MNT_FORCE : 0);
    return this.#release.run(() => unmountInNamespace(this.#ns, this.target, flags, { mountId: this.#mountId, ...(options.signal ? { signal: options.signal } : {}) }));
  }

  /** Unmounts it there (see the class); idempotent. */
  close(): Promise<void> {
    return this.#release.dispose(() => this.unmount());
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

async function umountIn(ns: OpenedTarget, target: string, flags: number, where: string, mountId?: number | bigint): Promise<void> {
  // With the mount's id, only that mount is unmounted: whatever else is at the path now is left.
  const id = mountId !== undefined && mountId !== 0 && mountId !== 0n ? [String(mountId)] : [];
  try {
    await runHelper({ op: 'umount', args: [target, String(flags), ...id], userns: ns.userns?.fd ?? null, mntns: ns.mntns?.fd ?? null, path: target, where });
  } catch (err) {
    const code = (err as { code?: string }).code;
    if (code === 'EINVAL' || code === 'ENOENT')
      throw new ImgmountError('ERR_NOT_MOUNTED', `${target} is not a mount point ${where}`, { cause: err, path: target });
    if ((err as { errno?: number }).errno === -osConstants.errno.ESTALE /* libuv has no name for it */)
      throw new ImgmountError('ERR_NOT_MOUNTED', `${target} ${where} no longer holds the mount imgmount made there (another is on it); left as it is`, { cause: err, path: target });
    throw err;
  }
}

/**
 * Mounts a partition of `source` at `target` inside the namespaces of `ns` ({ pid } or
 * { userns, mntns } as NamespaceFd, fd, path or { pid }). Same options and defaults as
 * mountPartition (read-only, nosuid, nodev; idmap needs the new mount API). The mount is
 * visible there and not in the caller's mount namespace. If `signal` fires after the mount
 * happened, it is unmounted again.
 */
export function mountInNamespace(
  ns: NamespaceTarget,
  source: LoopSource | LoopDevice,
  target: string,
  options: MountPartitionOptions,
): Promise<NamespaceMount> {
  return api(mountInNamespace, () => mountInNamespaceImpl(ns, source, target, options));
}

async function mountInNamespaceImpl(
  ns: NamespaceTarget,
  source: LoopSource | LoopDevice,
  target: string,
  options: MountPartitionOptions,
): Promise<NamespaceMount> {
  if (!(source instanceof LoopDevice)) checkSource(source);
  pathArg('target', target);
  const p = resolvePartitionOptions(options);
  throwIfAborted(p.signal);
  const where = describeTarget(ns);
  const opened = await openTarget(ns);
  const helperNs = { userns: opened.userns?.fd ?? null, mntns: opened.mntns?.fd ?? null, where };
  try {
    const api = await resolveMountApi(p.requested);
    let loopDevice: string | null;
    let mountId: number | bigint = 0;
    if (api === 'new') {
      const built = await buildMount(source, { detached: true }, options);
      loopDevice = built.loopDevice;
      mountId = built.mountId;
      try {
        await runHelper({ op: 'move-mount', args: [String(childFd(0)), target], passFds: [built.mountFd!], dest: target, ...helperNs });
      } finally {
        // Once moved, the fd no longer holds the only reference; if the move failed, closing
        // it dissolves the detached mount and auto-clears its loop device.
        await closeFd(built.mountFd!).catch(() => undefined);
      }
    } else {
      if (options.idmap !== undefined)
        throw new ImgmountError('ERR_IDMAP_UNSUPPORTED', 'ID-mapped mounts need the new mount API, which is unavailable or switched off here');
      const dev =
        source instanceof LoopDevice
          ? source
          : await attachLoop(source, { ...(options.loop ?? {}), offset: p.loop.offset, blockSize: p.loop.blockSize, sizeLimit: p.loop.sizeLimit, readOnly: p.loop.readOnly, autoclear: true });
      loopDevice = dev.path;
      try {
        await runHelper({
          op: 'mount',
          args: [`/proc/self/fd/${childFd(0)}`, target, p.fstype, String(p.flags), p.data ?? '-'],
          passFds: [dev.fd],
          path: dev.path,
          dest: target,
          ...helperNs,
        }).catch((err) => {
          throw mapMountError(err, { fstype: p.fstype, source: dev.path, target });
        });
      } finally {
        if (!(source instanceof LoopDevice)) await dev.close();
      }
    }
    debug('mounted %s in %s at %s via %s', loopDevice, where, target, api);
    if (p.signal?.aborted) {
      await umountIn(opened, target, 0, where, mountId).catch(() => undefined);
      throwIfAborted(p.signal);
    }
    return new NamespaceMount({ target, fstype: p.fstype, method: api, loopDevice, idmapped: options.idmap !== undefined, ns, mountId });
  } finally {
    await opened.close();
  }
}

export interface UnmountInNamespaceOptions {
  /** Unmount only if the mount at `target` has this id (statx); else ERR_NOT_MOUNTED. */
  mountId?: number | bigint;
  /** Checked before the namespace helper starts (once started, the unmount is let finish). */
  signal?: AbortSignal;
}

/**
 * umount2(target, flags | UMOUNT_NOFOLLOW) inside the namespaces of `ns`: a symlink at
 * `target` is never followed; with `mountId`, only that very mount is taken.
 */
export function unmountInNamespace(ns: NamespaceTarget, target: string, flags?: UmountFlags, options: UnmountInNamespaceOptions = {}): Promise<void> {
  return api(unmountInNamespace, () => unmountInNamespaceImpl(ns, target, flags, options));
}

async function unmountInNamespaceImpl(ns: NamespaceTarget, target: string, flags?: UmountFlags, options: UnmountInNamespaceOptions = {}): Promise<void> {
  pathArg('target', target);
  const n = umountFlagsToNumber(flags);
  throwIfAborted(options.signal);
  const opened = await openTarget(ns);
  try {
    throwIfAborted(options.signal);
    await umountIn(opened, target, n, describeTarget(ns), options.mountId);
  } finally {
    await opened.close();
  }
}

/**
 * Moves a detached mount (an fd from fsmount/open_tree(OPEN_TREE_CLONE)) onto `target`
 * inside the namespaces of `ns`. The fd stays the caller's.
 */
export function moveMountIntoNamespace(ns: NamespaceTarget, mountFd: number, target: string, options: { signal?: AbortSignal } = {}): Promise<void> {
  return api(moveMountIntoNamespace, () => moveMountIntoNamespaceImpl(ns, mountFd, target, options));
}

async function moveMountIntoNamespaceImpl(ns: NamespaceTarget, mountFd: number, target: string, options: { signal?: AbortSignal }): Promise<void> {
  if (!Number.isInteger(mountFd) || mountFd < 0) throw invalidArgType('mountFd', 'a file descriptor', mountFd);
  pathArg('target', target);
  throwIfAborted(options.signal);
  const opened = await openTarget(ns);
  try {
    // The move is one step: once started it is let finish (the fd stays the caller's to undo).
    throwIfAborted(options.signal);
    await runHelper({ op: 'move-mount', args: [String(childFd(0)), target], passFds: [mountFd], userns: opened.userns?.fd ?? null, mntns: opened.mntns?.fd ?? null, dest: target, where: describeTarget(ns) });
  } finally {
    await opened.close();
  }
}
