// Pinned paths: a path is resolved once into an O_PATH fd, checked on that fd, mounted onto
// that fd and unmounted through it. Nothing is looked up by name twice, so a directory that
// someone swaps for a symlink between two steps changes nothing (runc CVE-2021-30465).
//
// Three ways to pin, one per kind of path:
//  - pinTarget: a mount target the caller named. Followed once, as the caller wrote it (their
//    own symlinks included), then refused if it is a system directory (system-targets.ts).
//  - resolveInRoot: a path inside an image (a data partition's mount point). Resolved with
//    the image's root as "/" (openat2 RESOLVE_IN_ROOT): an absolute or ../../ symlink inside
//    the image stays inside the image.
//  - resolveBeneath: a layer directory inside an overlay (upper/, work/). No symlink at all,
//    no "..", no other mount on the way (RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS |
//    RESOLVE_NO_XDEV); created (mkdirat, which never follows) when missing and asked to.
// Kernels without openat2 (before 5.6) get the same resolution from native walkAt, one
// O_PATH|O_NOFOLLOW step per component; IMGMOUNT_RESOLVE=walk forces it (tests use that).

import * as fs from 'node:fs';
import * as nodePath from 'node:path';
import { constants as osConstants } from 'node:os';
import { ImgmountError, SystemError, invalidArgType } from '../errors';
import { binding, native, type NativePathInfo, type NativeTargetPin } from '../native/binding';
import { checkSystemTarget, systemTargetGuard, systemTargetReason } from './system-targets';

export const O_PATH = 0o10000000;
const { O_DIRECTORY, O_NOFOLLOW, O_RDONLY } = fs.constants;
void O_NOFOLLOW;

// openat2(2) RESOLVE_* flags.
export const RESOLVE_NO_XDEV = 0x01;
export const RESOLVE_NO_MAGICLINKS = 0x02;
export const RESOLVE_NO_SYMLINKS = 0x04;
export const RESOLVE_BENEATH = 0x08;
export const RESOLVE_IN_ROOT = 0x10;

const RESOLVER_ENV = 'IMGMOUNT_RESOLVE';

/** An fd for a directory, opened once; everything afterwards goes through the fd. */
export class PinnedDir implements AsyncDisposable, Disposable {
  readonly fd: number;
  /** What the kernel called it when it was opened (for messages and records only). */
  readonly path: string;
  readonly dev: number | bigint;
  readonly ino: number | bigint;
  readonly uid: number;
  readonly mode: number;
  /** Id of the mount it is on (0 where the kernel cannot tell). */
  readonly mountId: number | bigint;
  /** Whether it is the root of a mount. */
  readonly mountRoot: boolean;
  /**
   * A file to unlink in the same hop as the unmount through this directory, once it succeeds
   * (a root's mount record, when that mount is all the record describes). `removedOnUnmount`
   * says whether it is gone (the owner removes it the usual way otherwise).
   */
  removeOnUnmount: string | undefined;
  removedOnUnmount = false;
  #closed = false;

  /** @internal */
  constructor(info: NativePathInfo) {
    this.fd = info.fd;
    this.path = info.path;
    this.dev = info.dev;
    this.ino = info.ino;
    this.uid = info.uid;
    this.mode = info.mode;
    this.mountId = info.mountId;
    this.mountRoot = info.mountRoot;
  }

  /** The fd as a path the kernel resolves to exactly this directory (mount(2), overlay layers, helpers). */
  get procPath(): string {
    return `/proc/self/fd/${this.fd}`;
  }

  get closed(): boolean {
    return this.#closed;
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await new Promise<void>((resolve) => fs.close(this.fd, () => resolve()));
  }

  /** Marks the fd closed by someone else (a native call that closed it in the same hop). */
  released(): void {
    this.#closed = true;
  }

  /** Closing an O_PATH fd never blocks; the process-exit path needs a synchronous close. */
  [Symbol.dispose](): void {
    if (this.#closed) return;
    this.#closed = true;
    try {
      fs.closeSync(this.fd);
    } catch {
      // already gone
    }
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

function pathArg(name: string, v: unknown): string {
  if (typeof v !== 'string' || v.length === 0 || v.includes('\0')) throw invalidArgType(name, 'a non-empty path without NUL bytes', v);
  return v;
}

type Resolver = 'openat2' | 'walk';
let resolverMemo: Resolver | undefined;

function resolver(): Resolver {
  const forced = process.env[RESOLVER_ENV];
  if (forced === 'walk' || forced === 'openat2') return forced;
  return resolverMemo ?? 'openat2';
}

function isNoOpenat2(err: unknown): boolean {
  return err instanceof SystemError && err.syscall === 'openat2' && (err.code === 'ENOSYS' || err.code === 'EPERM');
}

/** openat2 with `resolve`, or the user-space walk where the kernel has no openat2. */
async function resolveAt(dirfd: number, p: string, flags: number, resolve: number): Promise<NativePathInfo> {
  const walkMode = { inRoot: (resolve & RESOLVE_IN_ROOT) !== 0, noXdev: (resolve & RESOLVE_NO_XDEV) !== 0 };
  if (resolver() === 'openat2') {
    for (let attempt = 0; ; attempt++) {
      try {
        return await native((b) => b.openAt(dirfd, p, flags, resolve));
      } catch (err) {
        // openat2(2): EAGAIN when ".." met a concurrent rename or mount; retrying is the answer.
        if (err instanceof SystemError && err.code === 'EAGAIN' && attempt < 16) continue;
        if (!isNoOpenat2(err) || process.env[RESOLVER_ENV] === 'openat2') throw err;
        resolverMemo = 'walk';
        break;
      }
    }
  }
  return native((b) => b.walkAt(dirfd, p, flags, walkMode));
}

const S_IFMT = 0o170000;
const S_IFLNK = 0o120000;
const STICKY = 0o1000;
const PROC_FD = /^\/proc\/self\/fd\/\d+$/;

/**
 * Opens the mount target the caller named, then checks it (a directory, not a system
 * directory: ERR_UNSAFE_TARGET). The caller owns the result.
 *
 * The directories leading to it are resolved without following a symlink anyone but root
 * could have put there (so a parent swapped for a symlink by a user, between any two steps,
 * leads nowhere: ERR_UNSAFE_PATH); the target itself may be a symlink, followed once, at the
 * open. `/proc/self/fd/N` is an fd of ours and is taken as it is.
 */
export async function pinTarget(target: string, what = 'target'): Promise<PinnedDir> {
  pathArg(what, target);
  let info: NativePathInfo;
  if (PROC_FD.test(target)) {
    info = await native((b) => b.openAt(-1, target, O_PATH | O_DIRECTORY, 0));
  } else {
    const abs = nodePath.resolve(target);
    const base = nodePath.basename(abs);
    // The common case, one hop: no symlink anywhere on the path (so nothing to judge).
    const direct = resolver() === 'openat2' ? await openWithoutSymlinks(abs) : null;
    if (direct) return checkedTarget(new PinnedDir(direct), target);
    const parent = await openParentDirs(nodePath.dirname(abs), abs);
    try {
      info = base === '' ? await native((b) => b.openAt(parent.fd, '.', O_PATH | O_DIRECTORY, 0)) : await native((b) => b.openAt(parent.fd, base, O_PATH | O_DIRECTORY, 0));
    } finally {
      await parent.close();
    }
  }
  return checkedTarget(new PinnedDir(info), target);
}

/**
 * How a mount's own native call may pin `target` (native/attach-mount.cc, `pin`): the path,
 * opened only if no symlink lies on it, refused unless the kernel names it as given and it is
 * none of the system directories; exactly what pinTarget() accepts in its one-hop case. Null
 * where pinTarget() must do it (an fd path, no openat2, a system directory by name: it says why).
 * A call declined by the kernel or a guard did nothing: pinTarget() then gives the answer.
 */
export async function targetPinRequest(target: string): Promise<Omit<NativeTargetPin, 'intent' | 'imageOwner'> | null> {
  pathArg('target', target);
  if (PROC_FD.test(target) || resolver() !== 'openat2') return null;
  const abs = nodePath.resolve(target);
  if (systemTargetReason(abs) !== null) return null;
  const { refuseIds, refuseDevs } = await systemTargetGuard();
  return { path: abs, resolve: RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS, expectName: abs, refuseIds, refuseDevs };
}

/** A pin failure of a mount's native call (syscall "pin:..."): nothing was done. */
export function isPinDeclined(err: unknown): boolean {
  return err instanceof SystemError && err.syscall.startsWith('pin:');
}

/** `abs` opened as a directory if no symlink lies on it (null if one does, or openat2 is missing: the careful walk decides). */
async function openWithoutSymlinks(abs: string): Promise<NativePathInfo | null> {
  try {
    return await native((b) => b.openAt(-1, abs, O_PATH | O_DIRECTORY, RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS));
  } catch (err) {
    if ((err instanceof SystemError && (err.code === 'ELOOP' || err.code === 'EAGAIN')) || isNoOpenat2(err)) return null;
    throw err;
  }
}

async function checkedTarget(pinned: PinnedDir, target: string): Promise<PinnedDir> {
  try {
    await checkSystemTarget(pinned, target);
  } catch (err) {
    await pinned.close();
    throw err;
  }
  return pinned;
}

/**
 * The kernel's name for the target a caller names, as pinTarget() would pin it (its
 * directories without untrusted symlinks, a symlink at the end followed once), found without
 * touching the target itself: nothing stats, opens or reads what is mounted there, so a hung
 * FUSE mount costs no thread. For finding a mount's record by the path the caller gives.
 */
export async function targetName(target: string): Promise<string> {
  pathArg('target', target);
  const abs = nodePath.resolve(target);
  const base = nodePath.basename(abs);
  if (base === '') return '/';
  const parent = await openParentDirs(nodePath.dirname(abs), abs);
  try {
    // readlink of a mount point's root fails (EINVAL) without asking its filesystem anything.
    const link = await fs.promises.readlink(`${parent.procPath}/${base}`).catch(() => null);
    if (link === null) return nodePath.join(parent.path, base);
    const to = nodePath.resolve(parent.path, link);
    const p2 = await openParentDirs(nodePath.dirname(to), abs);
    try {
      return nodePath.join(p2.path, nodePath.basename(to));
    } finally {
      await p2.close();
    }
  } finally {
    await parent.close();
  }
}

/**
 * The directory `dir` (absolute): openat2 with no symlinks at all (one hop); where that meets
 * a symlink, component by component, following only symlinks owned by root in directories
 * nobody else may write (like /var/run -> /run): those only root could have swapped.
 */
async function openParentDirs(dir: string, forMessage: string): Promise<PinnedDir> {
  if (resolver() === 'openat2') {
    try {
      return new PinnedDir(await native((b) => b.openAt(-1, dir, O_PATH | O_DIRECTORY, RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS)));
    } catch (err) {
      if (!(err instanceof SystemError && err.code === 'ELOOP') && !isNoOpenat2(err)) throw err;
    }
  }
  let cur = new PinnedDir(await native((b) => b.openAt(-1, '/', O_PATH | O_DIRECTORY, 0)));
  const rest = dir.split('/').filter((c) => c !== '' && c !== '.');
  const stack: PinnedDir[] = [];
  let links = 0;
  try {
    while (rest.length > 0) {
      const c = rest.shift()!;
      if (c === '..') {
        if (stack.length > 0) {
          await cur.close();
          cur = stack.pop()!;
        }
        continue;
      }
      const next = await native((b) => b.openAt(cur.fd, c, O_PATH | O_NOFOLLOW, 0));
      if ((next.mode & S_IFMT) !== S_IFLNK) {
        stack.push(cur);
        cur = new PinnedDir(next);
        if ((cur.mode & S_IFMT) !== fs.constants.S_IFDIR) throw new SystemError({ errno: osConstants.errno.ENOTDIR, syscall: 'openat', path: forMessage });
        continue;
      }
      await new Promise<void>((resolve) => fs.close(next.fd, () => resolve()));
      const trusted = next.uid === 0 && cur.uid === 0 && ((cur.mode & 0o022) === 0 || (cur.mode & STICKY) !== 0);
      if (!trusted || ++links > 40)
        throw new ImgmountError(
          'ERR_UNSAFE_PATH',
          `${forMessage}: ${nodePath.join(cur.path, c)} is a symbolic link that someone other than root could have put there ` +
            `(in ${cur.path}, owner uid ${cur.uid}, mode ${(cur.mode & 0o7777).toString(8)}); give the target's real path`,
          { path: forMessage },
        );
      const to = await fs.promises.readlink(`${cur.procPath}/${c}`);
      if (to.startsWith('/')) {
        for (const d of stack.splice(0)) await d.close();
        await cur.close();
        cur = new PinnedDir(await native((b) => b.openAt(-1, '/', O_PATH | O_DIRECTORY, 0)));
      }
      rest.unshift(...to.split('/').filter((x) => x !== '' && x !== '.'));
    }
    return cur;
  } catch (err) {
    await cur.close();
    throw err;
  } finally {
    for (const d of stack) await d.close();
  }
}

/** A second fd for the same directory (the same dentry, not what is mounted on it). */
export async function dupPinned(dir: PinnedDir): Promise<PinnedDir> {
  return new PinnedDir(await native((b) => b.openAt(dir.fd, '.', O_PATH | O_DIRECTORY, 0)));
}

function unsafe(err: unknown, p: string, where: string, why: string): unknown {
  if (err instanceof SystemError && (err.code === 'ELOOP' || err.code === 'EXDEV'))
    return new ImgmountError('ERR_UNSAFE_PATH', `${p} ${where}: ${why}`, { cause: err, path: p, details: { errno: err.errno, syscall: err.syscall } });
  return err;
}

/**
 * A directory inside an image, `p` resolved with `root` as "/": symlinks are followed but
 * never out of `root` (RESOLVE_IN_ROOT), magic links are refused.
 */
export async function resolveInRoot(root: PinnedDir, p: string): Promise<PinnedDir> {
  pathArg('path', p);
  try {
    return new PinnedDir(await resolveAt(root.fd, p, O_PATH | O_DIRECTORY, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS));
  } catch (err) {
    throw unsafe(err, p, `inside ${root.path}`, 'more than 40 symbolic links, or a loop');
  }
}

export interface BeneathOptions {
  /** Create the directory (this mode) if it does not exist; never through a symlink. */
  create?: number;
}

/**
 * A directory strictly below `dir`: no symlink anywhere, no "..", no other mount on the way.
 * A symlink where a directory should be is ERR_UNSAFE_PATH.
 */
export async function resolveBeneath(dir: PinnedDir, p: string, options: BeneathOptions = {}): Promise<PinnedDir> {
  pathArg('path', p);
  const resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV;
  if (options.create !== undefined) {
    if (p.includes('/')) throw invalidArgType('path', 'a single path component when creating', p);
    // mkdir of the last component never follows a symlink there: one is EEXIST, caught below.
    await fs.promises.mkdir(`${dir.procPath}/${p}`, { mode: options.create }).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== 'EEXIST') throw err;
    });
  }
  try {
    return new PinnedDir(await resolveAt(dir.fd, p, O_PATH | O_DIRECTORY, resolve));
  } catch (err) {
    throw unsafe(err, p, `in ${dir.path}`, 'a symbolic link or a path leading out of it, where a plain directory must be');
  }
}

/**
 * What is mounted at `p` strictly below `root`, crossing the mounts on the way and the one at
 * `p` (no symlink, no ".."): how the submounts of a tree we mounted are reached by fd.
 */
export async function openMountBeneath(root: PinnedDir, p: string): Promise<PinnedDir> {
  pathArg('path', p);
  try {
    return new PinnedDir(await resolveAt(root.fd, p, O_PATH | O_DIRECTORY, RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS));
  } catch (err) {
    throw unsafe(err, p, `in ${root.path}`, 'a symbolic link or a path leading out of it, where a mount point must be');
  }
}

/** A file strictly below `dir` (no symlink, no "..", no other mount), opened read-only: an fd the caller closes. */
export async function openFileBeneath(dir: PinnedDir, p: string): Promise<number> {
  pathArg('path', p);
  const resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV;
  try {
    return (await resolveAt(dir.fd, p, O_RDONLY, resolve)).fd;
  } catch (err) {
    throw unsafe(err, p, `in ${dir.path}`, 'a symbolic link or a path leading out of it, where a plain file must be');
  }
}

/** Opens a directory we created ourselves (a session directory), refusing symlinks on the way. */
export async function pinOwnDir(p: string): Promise<PinnedDir> {
  pathArg('path', p);
  return new PinnedDir(await native((b) => b.openAt(-1, p, O_PATH | O_DIRECTORY, RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS)).catch(async (err: unknown) => {
    if (!isNoOpenat2(err)) throw err;
    return native((b) => b.openAt(-1, p, O_PATH | O_DIRECTORY | O_NOFOLLOW, 0));
  }));
}

/**
 * The root of the mount stacked on a pinned directory (lookups through the pinned fd itself
 * do not cross into it). Used where only mount(2) mounted, which returns no mount fd.
 */
export async function openMountRoot(dir: PinnedDir): Promise<PinnedDir> {
  return new PinnedDir(await native((b) => b.openMountRoot(dir.fd)));
}

/**
 * umount2 through the pinned mount point: the topmost mount on that very dentry, whatever its
 * name is now. EINVAL there means nothing is mounted: ERR_NOT_MOUNTED. `release`: the pinned
 * fd is closed with the unmount (the handle is then closed).
 */
export async function umountPinned(dir: PinnedDir, flags: number, options: { release?: boolean } = {}): Promise<void> {
  try {
    // With release, the fd is closed in the same hop once unmounted (kept if the umount fails).
    const unlinked = await native((b) => b.umountAt(dir.fd, '', flags, dir.path, false, options.release === true, dir.removeOnUnmount));
    if (options.release) dir.released();
    // ENOENT: someone removed it first, which is as good.
    if (dir.removeOnUnmount !== undefined) dir.removedOnUnmount = unlinked === 0 || unlinked === -osConstants.errno.ENOENT;
  } catch (err) {
    if (err instanceof SystemError && err.code === 'EINVAL')
      throw new ImgmountError('ERR_NOT_MOUNTED', `${dir.path} is not a mount point`, { cause: err, path: dir.path });
    throw err;
  }
}

/** Synchronous umount2 through the pinned fd, for the process-exit path. */
export function umountPinnedSync(dir: PinnedDir, flags: number): void {
  binding().umountAt(dir.fd, '', flags, dir.path, true);
}
