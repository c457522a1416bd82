// Namespace fds: a user or mount namespace held open as an fd (from a pid, a path such as
// /proc/<pid>/ns/user, or an fd the caller already has, e.g. Apptainer's DriverParams.UsernsFd).
// The Node thread never joins one; the fds are handed to the kernel (MOUNT_ATTR_IDMAP) or to
// the single-threaded helper (lib/ns/helper.ts).

import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import { closeFd, openFd } from '../io/fd';
import { ImgmountError, invalidArgType, invalidArgValue } from '../errors';
import { toBig } from '../util/bigint';
import { native } from '../native/binding';

export type NamespaceType = 'user' | 'mnt';

/** A namespace fd with its kind checked (ioctl NS_GET_NSTYPE). close() releases an owned fd. */
export class NamespaceFd implements Disposable, AsyncDisposable {
  readonly fd: number;
  readonly type: NamespaceType;
  /** The namespace's inode number (what `readlink /proc/PID/ns/TYPE` shows in brackets). */
  readonly inode: number | bigint;
  readonly device: number | bigint;
  /** Whether close() closes the fd (false for an fd the caller keeps). */
  readonly owned: boolean;
  #closed = false;

  private constructor(fd: number, type: NamespaceType, inode: number | bigint, device: number | bigint, owned: boolean) {
    this.fd = fd;
    this.type = type;
    this.inode = inode;
    this.device = device;
    this.owned = owned;
  }

  /** Wraps an fd the caller keeps owning; checks it is a namespace of kind `expect`. */
  static async fromFd(fd: number, expect?: NamespaceType): Promise<NamespaceFd> {
    if (!Number.isInteger(fd) || fd < 0) throw invalidArgType('fd', 'a file descriptor (integer >= 0)', fd);
    return NamespaceFd.#make(fd, expect, false, `fd ${fd}`);
  }

  /** Opens /proc/<pid>/ns/<type>. */
  static async fromPid(pid: number, type: NamespaceType): Promise<NamespaceFd> {
    if (!Number.isInteger(pid) || pid <= 0) throw invalidArgValue('pid', pid, 'must be a positive integer');
    return NamespaceFd.fromPath(`/proc/${pid}/ns/${type}`, type);
  }

  /** Opens a namespace file (/proc/<pid>/ns/<type>, or a bind mount of one). */
  static async fromPath(path: string, expect?: NamespaceType): Promise<NamespaceFd> {
    if (typeof path !== 'string' || path.length === 0) throw invalidArgType('path', 'a non-empty string', path);
    const fd = await openFd(path, fs.constants.O_RDONLY);
    try {
      return await NamespaceFd.#make(fd, expect, true, path);
    } catch (err) {
      await closeFd(fd).catch(() => undefined);
      throw err;
    }
  }

  static async #make(fd: number, expect: NamespaceType | undefined, owned: boolean, what: string): Promise<NamespaceFd> {
    let info: { type: string; inode: number | bigint; device: number | bigint };
    try {
      info = await native((b) => b.nsInfo(fd));
    } catch (cause) {
      throw new ImgmountError('ERR_NAMESPACE', `${what} is not a namespace file`, { cause });
    }
    if (info.type !== 'user' && info.type !== 'mnt')
      throw new ImgmountError('ERR_NAMESPACE', `${what} is a ${info.type} namespace; only user and mnt namespaces are used here`);
    if (expect && info.type !== expect) throw new ImgmountError('ERR_NAMESPACE', `${what} is a ${info.type} namespace, not a ${expect} namespace`);
    return new NamespaceFd(fd, info.type, info.inode, info.device, owned);
  }

  /** A second, owned fd for the same namespace (reopened through /proc/self/fd). */
  async dup(): Promise<NamespaceFd> {
    return NamespaceFd.fromPath(`/proc/self/fd/${this.fd}`, this.type);
  }

  /** True if this is the namespace the calling process is in. */
  async isCurrent(): Promise<boolean> {
    const own = await fsp.stat(`/proc/self/ns/${this.type}`, { bigint: true });
    return own.ino === toBig(this.inode) && own.dev === toBig(this.device);
  }

  get closed(): boolean {
    return this.#closed;
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    if (this.owned) await closeFd(this.fd).catch(() => undefined);
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  /** Closing an nsfs fd never blocks, so a synchronous dispose is offered too. */
  [Symbol.dispose](): void {
    if (this.#closed) return;
    this.#closed = true;
    if (this.owned) fs.closeSync(this.fd);
  }
}

/** A namespace given as a NamespaceFd, a raw fd, a path, or a pid. */
export type NamespaceRef = NamespaceFd | number | string | { pid: number };

/** Resolves a ref to an owned NamespaceFd the caller must close (a dup for NamespaceFd/fd). */
export async function openNamespace(ref: NamespaceRef, type: NamespaceType): Promise<NamespaceFd> {
  if (ref instanceof NamespaceFd) {
    if (ref.type !== type) throw new ImgmountError('ERR_NAMESPACE', `expected a ${type} namespace, got a ${ref.type} namespace`);
    return ref.dup();
  }
  if (typeof ref === 'number') return (await NamespaceFd.fromFd(ref, type)).dup();
  if (typeof ref === 'string') return NamespaceFd.fromPath(ref, type);
  if (typeof ref === 'object' && ref !== null && typeof (ref as { pid?: unknown }).pid === 'number')
    return NamespaceFd.fromPid((ref as { pid: number }).pid, type);
  throw invalidArgType('namespace', 'a NamespaceFd, an fd, a path or { pid }', ref);
}

/**
 * Where an operation should happen: a process's namespaces ({ pid }) or explicit ones.
 * A namespace the caller is already in is not joined (setns to one's own user namespace is
 * refused by the kernel).
 */
export type NamespaceTarget = { pid: number } | { userns?: NamespaceRef | null; mntns?: NamespaceRef | null };

/** How messages name a NamespaceTarget: "in the namespaces of pid N" or "in the given namespaces". */
export function describeTarget(target: NamespaceTarget): string {
  const pid = (target as { pid?: number }).pid;
  return pid !== undefined ? `in the namespaces of pid ${pid}` : 'in the given namespaces';
}

export interface OpenedTarget {
  userns: NamespaceFd | null;
  mntns: NamespaceFd | null;
  close(): Promise<void>;
}

export async function openTarget(target: NamespaceTarget): Promise<OpenedTarget> {
  if (typeof target !== 'object' || target === null) throw invalidArgType('namespaces', 'an object ({ pid } or { userns, mntns })', target);
  const opened: NamespaceFd[] = [];
  const close = async (): Promise<void> => {
    await Promise.all(opened.map((n) => n.close()));
  };
  try {
    const pid = (target as { pid?: unknown }).pid;
    const userRef = pid !== undefined ? { pid: pid as number } : (target as { userns?: NamespaceRef | null }).userns;
    const mntRef = pid !== undefined ? { pid: pid as number } : (target as { mntns?: NamespaceRef | null }).mntns;
    let userns = userRef == null ? null : await openNamespace(userRef, 'user');
    if (userns) opened.push(userns);
    const mntns = mntRef == null ? null : await openNamespace(mntRef, 'mnt');
    if (mntns) opened.push(mntns);
    if (userns && (await userns.isCurrent())) userns = null;
    if (!userns && !mntns) throw new ImgmountError('ERR_NAMESPACE', 'no namespace to enter: give { pid } or at least one of userns and mntns (other than our own)');
    return { userns, mntns: mntns, close };
  } catch (err) {
    await close();
    throw err;
  }
}

/** The inode number of the mount namespace a NamespaceTarget names, as a string (how records keep it). */
export async function mountNamespaceInode(ns: NamespaceTarget): Promise<string> {
  const opened = await openTarget(ns);
  try {
    if (opened.mntns) return String(opened.mntns.inode);
    const own = await fsp.stat('/proc/self/ns/mnt');
    return String(own.ino);
  } finally {
    await opened.close();
  }
}
