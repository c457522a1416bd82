// Loads the C++ addon through `bindings` and types its raw surface.
//
// Nothing here is public API: lib/ wraps every native call, applies defaults and policy,
// and re-creates the call-site stack on failure (see `native()` below).

import bindings from 'bindings';
import * as path from 'node:path';
import { ImgmountError, SystemError } from '../errors';
import { checkTrustedPath, checkTrustedPathSync, type TrustVerdict } from '../util/trusted-path';
import { restackHere } from '../util/stack';

export type LockType = 'read' | 'write' | 'unlock';

export interface NativeLockHolder {
  type: 'read' | 'write';
  start: number;
  length: number;
  pid: number;
}

/** struct loop_info64 as LOOP_GET_STATUS64 returns it. */
export interface NativeLoopInfo {
  device: number | bigint;
  inode: number | bigint;
  rdevice: number | bigint;
  offset: number | bigint;
  sizeLimit: number | bigint;
  number: number;
  flags: number;
  fileName: string;
}

/** What a loop attach is asked to do (see native/loop.h): every field is required. */
export interface NativeLoopAttachSpec {
  /** The backing file's fd, or -1: the call opens `imagePath` (and closes it once bound). */
  imageFd: number;
  /** The backing file's path when imageFd is -1, else '' (errors then name no path). */
  imagePath: string;
  /** A device number to use instead of LOOP_CTL_GET_FREE, or -1. */
  device: number;
  openReadOnly: boolean;
  method: 'configure' | 'legacy';
  offset: number | bigint;
  sizeLimit: number | bigint;
  flags: number;
  /** 0: the kernel's default. */
  blockSize: number;
  fileName: string;
  /** Test seam: fail the binding ioctl with this errno instead of making it (testHooks.injectErrno); 0: make it. */
  injectErrno: number;
}

export interface NativeLoopAttached {
  imageDevice: number | bigint;
  imageInode: number | bigint;
  fd: number;
  number: number;
  path: string;
  /** LOOP_GET_STATUS64 right after LOOP_CONFIGURE; null on the legacy method. */
  status: NativeLoopInfo | null;
}

/** One mount as lib/mount decided it (see native/mount.h). */
export interface NativeMountSpec {
  api: 'new' | 'legacy';
  source?: string;
  target?: string;
  fstype?: string;
  /** mount(2) flags (legacy). */
  flags?: number;
  /** mount(2) data (legacy). */
  data?: string;
  /** fsconfig keys: [key, null] is FSCONFIG_SET_FLAG, [key, value] FSCONFIG_SET_STRING. */
  options?: Array<[string, string | null]>;
  /** MOUNT_ATTR_* for fsmount. */
  attrs?: number;
  /** MOUNT_ATTR_IDMAP with this user-namespace fd. */
  usernsFd?: number;
  /** Keep the mount detached and return its fd. */
  detached?: boolean;
  /** A pinned directory to mount onto (move_mount T_EMPTY_PATH; /proc/self/fd/N for mount(2)); `target` then only names it. */
  targetFd?: number;
  /** Attach it, and return its fd too (the root of the new mount). */
  keepMountFd?: boolean;
  /** loopAttachMount only: open the target in the same hop, before anything is bound (native/attach-mount.cc). */
  pin?: NativeTargetPin;
  /**
   * loopAttachMount only: this (detached) mount is the lower layer of an overlay the call
   * builds over fds and places: `upper` a detached tmpfs in which `dirs` (upperdir, workdir)
   * are made; `spec` the overlay, placed at the pin's target or spec.targetFd.
   */
  overlay?: { upper: NativeMountSpec | null; dirs: Array<[string, number]>; spec: NativeMountSpec };
}

/**
 * A target opened by loopAttachMount itself: openat2(path, O_PATH|O_DIRECTORY, resolve), then
 * refused (syscall "pin:name" or "pin:identity", nothing done) unless the kernel's name for it
 * is expectName and its identity is not refused; then `intent` written exclusively (removed
 * again if the attach or mount fails). Every failure of this stage has a syscall "pin:...".
 */
export interface NativeTargetPin {
  path: string;
  resolve: number;
  expectName: string;
  /** Refused identities: dev, ino, dev, ino, ... (one typed array: one read for the addon, not one per number). */
  refuseIds: BigUint64Array;
  /** Refused filesystems (st_dev). */
  refuseDevs: BigUint64Array;
  /** Refused ("pin:owner") unless fstat of this fd shows this owner, group and mode (& 0o7777). */
  imageOwner?: { fd: number; uid: number; gid: number; mode: number };
  intent?: { tmp: string; path: string; data: Buffer; mode: number };
}

export interface NativeMountDone {
  mountFd: number | null;
  messages: string[];
  /** statx mount id of the new mount (new API; 0 where unknown). */
  mountId?: number | bigint;
}

/** An fd the path calls opened, with its fstat, mount id and the kernel's name for it. */
export interface NativePathInfo {
  fd: number;
  dev: number | bigint;
  ino: number | bigint;
  mode: number;
  uid: number;
  gid: number;
  /** statx mount id (the unique one where the kernel has it); 0 if unknown. */
  mountId: number | bigint;
  mountRoot: boolean;
  path: string;
}

export type NativeAttachMounted = Omit<NativeLoopAttached, 'fd'> & NativeMountDone & { fd: number | null; /** With mountSpec.pin: the target it opened. */ target?: NativePathInfo };

/** Whose credentials openAs uses: effective uid and gid, and the supplementary groups. */
export interface NativeCredentials {
  uid: number;
  gid: number;
  groups: readonly number[];
}

/**
 * What openAs found (statx of the opened fd). `refused`: not opened (fd -1) because stat
 * showed a FIFO, socket or character device ('file-type', stat fields of that file), or the
 * path changed between stat and open ('changed').
 */
export interface NativeOpenedAs {
  fd: number;
  refused?: 'file-type' | 'changed';
  dev: number | bigint;
  ino: number | bigint;
  mode: number;
  size: number | bigint;
  rdev: number | bigint;
  uid: number;
  gid: number;
}

/**
 * What openImage found (native/image.cc). `path` is the realpath; `refused`: not opened
 * (fd -1) because stat showed a type not in acceptTypes ('file-type', `mode` says which), or
 * the path changed between stat and open ('changed'). `writeAccess`: with checkWrite, 0 or
 * the errno of access(W_OK). `headLength`: how many bytes of the file's start were read
 * into `window` (min(window.length, size), fewer only if the file shrank).
 */
export interface NativeOpenedImage extends NativeOpenedAs {
  path: string;
  writeAccess?: number;
  headLength: number;
}

/** The raw addon. Numbers that may exceed 2^53 come back as bigint. */
export interface NativeBinding {
  abiVersion: number;
  initialize(options: { SystemError: typeof SystemError }): void;
  ofdSetLock(fd: number, type: LockType, start: number, length: number, sync?: boolean): Promise<void>;
  ofdGetLock(fd: number, type: LockType, start: number, length: number, sync?: boolean): Promise<NativeLockHolder | null>;
  /** NSS lookups (getpwnam_r/getgrnam_r): the id, or null if there is no such name. */
  lookupUser(name: string): Promise<number | null>;
  lookupGroup(name: string): Promise<number | null>;
  /** getpwuid_r + getgrouplist: the user's name, primary group and all groups, or null without a passwd entry. */
  userInfo(uid: number, sync?: boolean): Promise<{ name: string; gid: number; groups: number[] } | null>;
  /** Opens `path` with another user's credentials in a short-lived child task (native/credentials.cc). */
  openAs(path: string, flags: number, credentials: NativeCredentials, sync?: boolean): Promise<NativeOpenedAs>;
  // small files (native/files.cc)
  /**
   * Creates tmpPath (O_EXCL|O_NOFOLLOW, mode), writes data, renames it over path; tmpPath is
   * removed after a failure. `exclusive`: links it to path instead (EEXIST, syscall 'link', if
   * path exists), then unlinks tmpPath.
   */
  replaceFile(tmpPath: string, path: string, data: Buffer, mode: number, options?: { exclusive?: boolean }, sync?: boolean): Promise<void>;
  // images (native/image.cc)
  openImage(path: string, options: { checkWrite: boolean; acceptTypes: number[]; window: Buffer }, sync?: boolean): Promise<NativeOpenedImage>;
  /** Each [offset, length] read fully (shorter only at EOF), in one hop. */
  preadRanges(fd: number, ranges: Array<[number, number]>, sync?: boolean): Promise<Buffer[]>;
  // loop devices (native/loop.cc)
  loopCtlGetFree(sync?: boolean): Promise<number>;
  loopAttach(spec: NativeLoopAttachSpec, sync?: boolean): Promise<NativeLoopAttached>;
  loopSetStatus(fd: number, info: { offset: number | bigint; sizeLimit: number | bigint; flags: number; fileName: string }, path: string, sync?: boolean): Promise<void>;
  loopGetStatus(device: number | string, sync?: boolean): Promise<NativeLoopInfo>;
  loopOpen(path: string, readOnly: boolean, sync?: boolean): Promise<{ fd: number; status: NativeLoopInfo }>;
  loopDetach(fd: number, clear: boolean, path: string, sync?: boolean): Promise<void>;
  /** errno of LOOP_CONFIGURE with backing fd -1 on a free device: EBADF = supported. */
  loopProbeConfigure(sync?: boolean): Promise<number>;
  flock(fd: number, operation: 'ex' | 'sh' | 'un', nonBlocking: boolean, sync?: boolean): Promise<void>;
  /** close(2) of an fd the addon opened (see lib/io/fd.ts closeAddonFd). */
  closeFd(fd: number): Promise<void>;
  /** Each file's text, or the errno that stopped reading it. */
  readTextFiles(paths: string[], maxBytes: number, sync?: boolean): Promise<Array<string | number>>;
  // mounting (native/mount.cc; the fused loop attach + mount in native/attach-mount.cc, the watcher in native/mountinfo-watch.cc)
  mount(source: string | null, target: string, fstype: string | null, flags: number, data: string | null, sync?: boolean): Promise<void>;
  umount(target: string, flags: number, sync?: boolean): Promise<void>;
  fsMount(spec: NativeMountSpec, sync?: boolean): Promise<NativeMountDone>;
  openTree(dirfd: number, path: string, flags: number, sync?: boolean): Promise<number>;
  mountSetattr(fd: number, path: string, atFlags: number, attr: { attrSet?: number; attrClr?: number; propagation?: number; usernsFd?: number }, sync?: boolean): Promise<void>;
  moveMount(fromFd: number, fromPath: string, toFd: number, toPath: string, flags: number, sync?: boolean): Promise<void>;
  /** errnos of fsopen(NULL) and mount_setattr(-1, NULL, 0, NULL, 0): ENOSYS missing, EPERM filtered. */
  mountApiProbe(sync?: boolean): Promise<{ fsopen: number; mountSetattr: number }>;
  /** An overlay built over two fresh detached tmpfs mounts as loopAttachMount's `overlay` builds one, then dropped: errno 0 when the kernel takes detached layers by fd. */
  overlayLayersProbe(sync?: boolean): Promise<{ errno: number; syscall: string }>;
  loopAttachMount(loop: NativeLoopAttachSpec, mount: NativeMountSpec, keepLoopFd: boolean, sync?: boolean): Promise<NativeAttachMounted>;
  /**
   * Watches an open /proc/<pid>/mountinfo fd on the event loop (uv_poll, POLLPRI): onChange(null)
   * after each change of that mount table, onChange('<uv error name>') if polling failed. The fd
   * stays the caller's; close() the watcher before closing it.
   */
  MountTableWatcher: new (fd: number, onChange: (error: string | null) => void) => { close(): void };
  // programs started without forking Node (native/spawn.cc)
  /** errno of pidfd_open on this process: 0 where spawnProgram can be used. */
  pidfdProbe(sync?: boolean): Promise<number>;
  /**
   * posix_spawn on a pool thread, then pidfd_open: fds[i] becomes fd i (-1: /dev/null); nothing
   * else is inherited. Each child fd in `pipes` (its fds entry -1) gets a fresh pipe's write
   * end; the read ends come back in `pipes`, in order. If pidfd_open fails once it runs, it is
   * killed (a rejection, syscall pidfd_open), or with `waitUnwatched` waited for: pidfd -1 and
   * `exited`.
   */
  spawnProgram(
    spec: { file: string; argv: string[]; envp: string[]; fds: number[]; setsid: boolean; pipes?: number[]; waitUnwatched?: boolean },
    sync?: boolean,
  ): Promise<{ pid: number; pidfd: number; pipes: number[]; exited?: { code: number | null; signal: number | null } }>;
  /** Watches a pidfd (and owns it) on the event loop; onExit(code, signal number) once it exited and was reaped. kill: pidfd_send_signal (false once it exited). */
  ProcessWatcher: new (pidfd: number, pid: number, onExit: (code: number | null, signal: number | null) => void) => { kill(signal: number): boolean; ref(): void; unref(): void; close(): void };
  // pinned paths (native/path.cc); dirfd -1 is AT_FDCWD
  openAt(dirfd: number, path: string, flags: number, resolve: number, sync?: boolean): Promise<NativePathInfo>;
  walkAt(dirfd: number, path: string, flags: number, mode: { inRoot: boolean; noXdev: boolean }, sync?: boolean): Promise<NativePathInfo>;
  openMountRoot(fd: number, sync?: boolean): Promise<NativePathInfo>;
  umountAt(dirfd: number, name: string, flags: number, display: string, sync?: boolean, closeDirFd?: boolean, unlinkAfter?: string): Promise<number>;
  /** mkdir of each path in order, and a PathInfo for each with pin (null for the others). */
  makeDirs(entries: Array<{ path: string; mode: number; pin?: boolean }>, sync?: boolean): Promise<Array<NativePathInfo | null>>;
  /** rmdir of each path in order, stopping at the first failure. */
  removeDirs(paths: string[], sync?: boolean, unlinkAfter?: string): Promise<number>;
  /** Test-only fault injection (native/faults.h; use lib/native/faults.ts): null disarms. */
  injectFaults(rules: Array<{ step: string; errno: number; skip?: number; times?: number }> | null): void;
  faultHits(): Record<string, number>;
  // namespaces (native/namespace.cc)
  nsInfo(fd: number, sync?: boolean): Promise<{ type: string; inode: number | bigint; device: number | bigint }>;
  [name: string]: unknown;
}

const packageRoot = path.resolve(__dirname, '..', '..', '..');

/**
 * Where the addon may be, in order (each with imgmount-nsenter next to it): a build from
 * source on this machine (a clone, or the install step's fallback when the prebuild did not
 * load), then the prebuild the package ships (`npm pack`'s prepack puts it there; N-API, so
 * one binary serves every supported Node). Each is tried through `bindings`; the first that
 * loads wins, and ERR_NATIVE_LOAD lists each one with why it did not.
 */
export function addonCandidates(): string[][] {
  return [
    ['build', 'Release'],
    ['build', 'Debug'],
    ['prebuilds', `${process.platform}-${process.arch}`],
  ];
}

const euid = (): number => process.geteuid?.() ?? -1;

function unsafeOverride(variable: string, file: string, reason: string, what: string): ImgmountError {
  return new ImgmountError('ERR_UNSAFE_OVERRIDE', `${variable} names ${file}, which a privileged process may not ${what}: ${reason}`, {
    path: file,
    details: { variable, reason },
  });
}

/**
 * The addon named by IMGMOUNT_NATIVE_PATH, resolved; as root, only if it passes the trust check.
 * Synchronous because binding() is (every native call goes through it, and require() is
 * synchronous anyway): a realpath and a few lstat calls, once per process, at first load.
 */
function nativeOverride(file: string): string {
  if (euid() !== 0) return path.resolve(file);
  const verdict = checkTrustedPathSync(file, { followFinal: true });
  // A missing file is not unsafe: require() fails on it and ERR_NATIVE_LOAD says what was tried.
  if (verdict.code === 'ENOENT') return path.resolve(file);
  if (verdict.reason !== null) throw unsafeOverride('IMGMOUNT_NATIVE_PATH', path.resolve(file), verdict.reason, 'load');
  return verdict.path;
}

let loaded: NativeBinding | undefined;
let loadedFrom: string | undefined;
let loadError: ImgmountError | undefined;

const firstLine = (err: unknown): string => String((err as Error)?.message ?? err).split('\n')[0]!;

/** Loads one candidate; a file that is not there is `null`, any other failure throws. */
function loadFrom(dir: string[]): { b: NativeBinding; file: string } | null {
  try {
    const b = bindings({ bindings: 'imgmount.node', module_root: packageRoot, try: [['module_root', ...dir, 'bindings']] }) as NativeBinding;
    return { b, file: path.join(packageRoot, ...dir, 'imgmount.node') };
  } catch (err) {
    if (Array.isArray((err as { tries?: unknown }).tries)) return null;
    throw err;
  }
}

/** The addon, loaded once per environment; throws ERR_NATIVE_LOAD naming every place it looked. */
export function binding(): NativeBinding {
  if (loaded) return loaded;
  if (loadError) throw loadError;
  const override = process.env.IMGMOUNT_NATIVE_PATH;
  const tried: string[] = [];
  const why: string[] = [];
  let cause: unknown;
  try {
    if (override) {
      const file = nativeOverride(override);
      tried.push(file);
      try {
        const b = require(file) as NativeBinding;
        b.initialize({ SystemError });
        loadedFrom = file;
        return (loaded = b);
      } catch (err) {
        cause = err;
        why.push(firstLine(err));
      }
    } else {
      for (const dir of addonCandidates()) {
        const file = path.join(packageRoot, ...dir, 'imgmount.node');
        tried.push(file);
        try {
          const got = loadFrom(dir);
          if (got === null) {
            why.push('not found');
            continue;
          }
          got.b.initialize({ SystemError });
          loadedFrom = got.file;
          return (loaded = got.b);
        } catch (err) {
          // Present but not loadable here (another libc, an older glibc or libstdc++): the next one may be.
          cause = err;
          why.push(firstLine(err));
        }
      }
    }
  } catch (err) {
    loadError = err as ImgmountError;
    throw err;
  }
  loadError = new ImgmountError(
    'ERR_NATIVE_LOAD',
    'could not load the imgmount native addon; tried:\n' +
      tried.map((file, i) => `  ${file}: ${why[i]}\n`).join('') +
      'The package ships it prebuilt for linux-x64 with glibc; elsewhere build it from source: ' +
      '`npm rebuild imgmount --build-from-source` (needs python3, make and g++), ' +
      'or point IMGMOUNT_NATIVE_PATH at a built imgmount.node.',
    { ...(cause !== undefined ? { cause } : {}), details: { tried, errors: why } },
  );
  throw loadError;
}

/** Where the loaded addon is (the namespace helper executable sits next to it). */
export function nativeBuildDir(): string {
  const override = process.env.IMGMOUNT_NATIVE_PATH;
  if (override) return path.dirname(path.resolve(override));
  if (loadedFrom === undefined) {
    try {
      binding();
    } catch {
      // No addon, so no helper either: name where the first candidate would be.
    }
  }
  return path.dirname(loadedFrom ?? path.join(packageRoot, ...addonCandidates()[0]!, 'imgmount.node'));
}

/**
 * The single-threaded namespace helper built next to the addon (native/helper/nsenter.c);
 * IMGMOUNT_HELPER_PATH points elsewhere (bundlers, asar unpacking). As configured, for
 * messages: what is run is trustedHelperPath().
 */
export function helperPath(): string {
  const override = process.env.IMGMOUNT_HELPER_PATH;
  return override ? path.resolve(override) : path.join(nativeBuildDir(), 'imgmount-nsenter');
}

/** Helper programs that passed the trust check: as configured -> as resolved. */
const trustedHelpers = new Map<string, string>();

/**
 * The namespace helper to run. When an environment variable chose it (IMGMOUNT_HELPER_PATH, or
 * IMGMOUNT_NATIVE_PATH, next to which it sits) and this process is root, it must pass the trust
 * check (memoised when it does); it is then run by its resolved path. ERR_UNSAFE_OVERRIDE if not.
 */
export async function trustedHelperPath(): Promise<string> {
  const file = helperPath();
  const variable = process.env.IMGMOUNT_HELPER_PATH ? 'IMGMOUNT_HELPER_PATH' : process.env.IMGMOUNT_NATIVE_PATH ? 'IMGMOUNT_NATIVE_PATH' : null;
  if (variable === null || euid() !== 0) return file;
  const hit = trustedHelpers.get(file);
  if (hit !== undefined) return hit;
  const verdict: TrustVerdict = await checkTrustedPath(file, { followFinal: true });
  // A missing helper is not unsafe: spawning it fails with ENOENT, and the error says how to build it.
  if (verdict.code === 'ENOENT') return file;
  if (verdict.reason !== null) throw unsafeOverride(variable, file, verdict.reason, 'run');
  trustedHelpers.set(file, verdict.path);
  return verdict.path;
}

/**
 * Calls a native function and, if it rejects, gives the error the stack of the JS callers
 * (an async native rejection would otherwise point into the event loop). The stack is taken
 * when the call fails, not before: V8's async stack traces name every async function awaiting
 * this one, and a capture on every call would cost the hot path a few microseconds each.
 */
export async function native<T>(call: (b: NativeBinding) => Promise<T>): Promise<T> {
  try {
    return await call(binding());
  } catch (err) {
    throw restackHere(err, native);
  }
}
