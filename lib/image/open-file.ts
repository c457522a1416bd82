// Opening an image file safely: check the file type before open (opening a device or FIFO
// can block or have side effects), open without following a swapped-in symlink, and check
// that what was opened is what was checked. With a user's credentials (`openImageFileAs`),
// the same steps run as that user in a native child task.

import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import { debug } from '../util/debug';
import { ImgmountError, fromNodeError } from '../errors';
import { closeAddonFd, closeFd, fstatFd } from '../io/fd';
import { native, type NativeOpenedAs } from '../native/binding';
import { describeCredentials, type UserCredentials } from './credentials';

export type FileKind = 'file' | 'directory' | 'block';

export interface OpenedFile {
  fd: number;
  kind: FileKind;
  /** Bytes in the file or block device (0 for directories). */
  size: number;
  dev: number;
  ino: number;
  /** The fd is open for writing (a directory: the user may write it). */
  writable?: boolean;
  /** Owner and mode, from the stat of the open. */
  ownership?: ImageFileOwnership;
}

/** What the trust rule looks at of the image's open file: owner, group and mode (as fstat gives them). */
export interface ImageFileOwnership {
  uid: number;
  gid: number;
  mode: number;
}

function kindOfMode(mode: number, p: string): FileKind {
  const type = mode & fs.constants.S_IFMT;
  if (type === fs.constants.S_IFREG) return 'file';
  if (type === fs.constants.S_IFDIR) return 'directory';
  if (type === fs.constants.S_IFBLK) return 'block';
  const what =
    type === fs.constants.S_IFIFO
      ? 'a FIFO'
      : type === fs.constants.S_IFSOCK
        ? 'a socket'
        : type === fs.constants.S_IFCHR
          ? 'a character device'
          : 'not a regular file';
  throw new ImgmountError(
    'ERR_IMAGE_UNSUPPORTED_FILE_TYPE',
    `${p} is ${what}; an image must be a regular file, a block device or a directory`,
    { path: p },
  );
}

/** Size of a block device from sysfs (no ioctl, no privilege needed). */
async function blockDeviceSize(rdev: number | bigint, p: string): Promise<number> {
  // glibc's major()/minor() split of dev_t.
  const dev = BigInt(rdev);
  const major = ((dev >> 8n) & 0xfffn) | ((dev >> 32n) & ~0xfffn);
  const minor = (dev & 0xffn) | ((dev >> 12n) & ~0xffn & 0xffffffffn);
  try {
    const sectors = await fsp.readFile(`/sys/dev/block/${major}:${minor}/size`, 'utf8');
    return Number(sectors.trim()) * 512;
  } catch (err) {
    throw new ImgmountError('ERR_IMAGE_UNSUPPORTED_FILE_TYPE', `cannot read the size of block device ${p}`, {
      path: p,
      cause: err,
    });
  }
}

function openFd(p: string, flags: number): Promise<number> {
  return new Promise((resolve, reject) => fs.open(p, flags, (err, fd) => (err ? reject(err) : resolve(fd))));
}

/** Bytes read at the start of an image in the same hop as the open: a SIF's header, descriptor table and (usually) its partitions' superblocks. */
export const HEAD_WINDOW = 64 * 1024;

/**
 * Detection windows kept for the next init(): a fresh 64 KiB buffer per init() costs an
 * allocation and external memory the GC has to be pressed to collect (about 20 µs a cycle
 * here). A window is borrowed for one open and its detection, and given back once nothing
 * reads it; whatever detection keeps (superblocks, descriptors) is copied out of it.
 */
const spareWindows: Buffer[] = [];
const SPARE_WINDOWS = 8;

/** Test seam: windows given back are overwritten, so that a view kept past its init() reads garbage in the tests, not silently later. */
export const windowTestHooks: { poison?: boolean } = {};

function borrowWindow(): Buffer {
  return spareWindows.pop() ?? Buffer.allocUnsafe(HEAD_WINDOW);
}

/** Gives a window back (once; nothing may read it afterwards). */
export function returnWindow(window: Buffer): void {
  if (windowTestHooks.poison) window.fill(0xa5);
  if (spareWindows.length < SPARE_WINDOWS && !spareWindows.includes(window)) spareWindows.push(window);
}

export interface OpenedImageFile extends OpenedFile {
  /** The absolute path with every symlink resolved (realpath). */
  path: string;
  /** The first min(HEAD_WINDOW, size) bytes (empty for a directory): a view of `window`. */
  head: Buffer;
  /** The borrowed buffer `head` is a view of: the caller gives it back (returnWindow) once nothing reads it. */
  window: Buffer;
  /** With checkWrite: whether the real uid may write it (access(W_OK)). */
  writeAccess: boolean;
}

const ACCEPTED_TYPES = [fs.constants.S_IFREG, fs.constants.S_IFDIR, fs.constants.S_IFBLK];

/**
 * Resolves `p` (realpath), checks the real uid may read it (and with `checkWrite`, whether it
 * may write it), and opens it read-only, as Apptainer does, in one native hop
 * (native/image.cc) that also reads the first HEAD_WINDOW bytes. The type is checked before
 * open (a FIFO or device can block or have side effects on open); O_NONBLOCK keeps a FIFO
 * swapped in after the stat from blocking; O_NOFOLLOW refuses a symlink swapped in; the fd
 * must be the file stat'ed.
 */
export async function openImageFile(p: string, checkWrite: boolean): Promise<OpenedImageFile> {
  let opened;
  const window = borrowWindow();
  try {
    opened = await native((b) => b.openImage(p, { checkWrite, acceptTypes: ACCEPTED_TYPES, window }));
  } catch (err) {
    returnWindow(window);
    const e = err as { syscall?: string; path?: string };
    const at = e.path ?? p;
    switch (e.syscall) {
      case 'realpath':
        throw fromNodeError(err, `failed to retrieve path for ${p}`);
      case 'access':
        throw new ImgmountError('ERR_IMAGE_NOT_READABLE', `${at} is not readable by the current user, check permissions`, { path: at, cause: err });
      case 'stat':
      case 'fstat':
        throw fromNodeError(err, `failed to stat ${at}`);
      case 'open':
        throw fromNodeError(err, `failed to open ${at}`);
      case 'ioctl(BLKGETSIZE64)':
        throw new ImgmountError('ERR_IMAGE_UNSUPPORTED_FILE_TYPE', `cannot read the size of block device ${at}`, { path: at, cause: err });
      case 'pread':
        throw fromNodeError(err, `can't read the start of ${at}`);
      default:
        throw fromNodeError(err, `failed to open ${at}`);
    }
  }
  if (opened.refused !== undefined) {
    returnWindow(window);
    if (opened.refused === 'file-type') kindOfMode(opened.mode, opened.path); // throws, naming the type
    throw new ImgmountError('ERR_IMAGE_UNSUPPORTED_FILE_TYPE', `${opened.path} changed while it was being opened`, { path: opened.path });
  }
  return {
    window,
    fd: opened.fd,
    kind: kindOfMode(opened.mode, opened.path),
    size: Number(opened.size),
    dev: Number(opened.dev),
    ino: Number(opened.ino),
    ownership: { uid: opened.uid, gid: opened.gid, mode: opened.mode },
    path: opened.path,
    head: window.subarray(0, opened.headLength),
    writeAccess: opened.writeAccess === 0,
  };
}

/**
 * Opens the same file again read-write through /proc/self/fd (the same inode, whatever
 * happened to the path meanwhile), and checks it is the same file.
 */
export function reopenReadWrite(file: OpenedFile, displayPath: string): Promise<number> {
  return reopen(file, fs.constants.O_RDWR, displayPath, 'writing');
}

/** The same, read-only: gives up the write access of a file that will not be written. */
export function reopenReadOnly(file: OpenedFile, displayPath: string): Promise<number> {
  return reopen(file, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK, displayPath, 'reading');
}

async function reopen(file: OpenedFile, flags: number, displayPath: string, what: string): Promise<number> {
  let fd: number;
  try {
    fd = await openFd(`/proc/self/fd/${file.fd}`, flags);
  } catch (err) {
    throw fromNodeError(err, `failed to open ${displayPath} for ${what}`);
  }
  const st = await fstatFd(fd).catch(async (err) => {
    await closeFd(fd).catch(() => undefined);
    throw fromNodeError(err, `failed to stat ${displayPath}`);
  });
  if (st.dev !== file.dev || st.ino !== file.ino) {
    await closeFd(fd).catch(() => undefined);
    throw new ImgmountError('ERR_IMAGE_UNSUPPORTED_FILE_TYPE', `${displayPath} changed while it was being opened`, {
      path: displayPath,
    });
  }
  return fd;
}

export interface OpenedFileAs extends OpenedFile {
  /** Where the fd leads, as the kernel says (`readlink /proc/self/fd/N`). */
  path: string;
  /** Writing was asked for but the user may not write: why the file was opened read-only. */
  readOnlyReason?: string;
}

/** errnos that mean "this user may not": the image is not readable (or writable) by them. */
const DENIED = ['EACCES', 'EPERM', 'EROFS'];
/** Steps of openAs whose denial is about the file (not about switching credentials). */
const FILE_STEPS = ['statx', 'open', 'faccessat2'];

function denied(err: unknown): boolean {
  const e = err as { code?: unknown; syscall?: unknown };
  return typeof e?.code === 'string' && DENIED.includes(e.code) && typeof e.syscall === 'string' && FILE_STEPS.includes(e.syscall);
}

/**
 * Opens `p` with the credentials `as` (native/credentials.cc): the path and every symlink on
 * it are followed with that user's rights, FIFOs, sockets and character devices are refused
 * before open, and what was opened must be what was stat'ed. With `writable`, the file is
 * opened read-write as the user (a directory: checked writable by them); if the user may
 * read but not write it, it is opened read-only and `readOnlyReason` says why. A block device
 * is refused unless `allowBlockDevice`. A user who may not read it gets ERR_IMAGE_NOT_READABLE
 * (the SystemError, EACCES or EPERM, is its `cause`).
 */
export async function openImageFileAs(p: string, writable: boolean, as: UserCredentials, allowBlockDevice: boolean): Promise<OpenedFileAs> {
  const who = describeCredentials(as);
  let opened: NativeOpenedAs;
  let readOnlyReason: string | undefined;
  try {
    try {
      opened = await native((b) => b.openAs(p, writable ? fs.constants.O_RDWR : fs.constants.O_RDONLY, as));
    } catch (err) {
      if (!writable || !denied(err)) throw err;
      readOnlyReason = `no write permission for ${who} (${(err as { code: string }).code})`;
      debug('opening %s as %s read-only: %s', p, who, (err as Error).message);
      opened = await native((b) => b.openAs(p, fs.constants.O_RDONLY, as));
    }
  } catch (err) {
    if (denied(err)) {
      throw new ImgmountError('ERR_IMAGE_NOT_READABLE', `${p} is not readable by ${who}, check permissions`, { path: p, cause: err });
    }
    throw fromNodeError(err, `failed to open ${p} as ${who}`);
  }
  if (opened.refused === 'file-type') kindOfMode(opened.mode, p); // throws, naming the type
  if (opened.refused !== undefined) {
    throw new ImgmountError('ERR_IMAGE_UNSUPPORTED_FILE_TYPE', `${p} changed while it was being opened`, { path: p });
  }
  const fd = opened.fd;
  try {
    const shown = await fsp.readlink(`/proc/self/fd/${fd}`).catch(() => p);
    const display = shown.replace(/ \(deleted\)$/, '');
    const kind = kindOfMode(opened.mode, display);
    if (kind === 'block' && !allowBlockDevice) {
      throw new ImgmountError(
        'ERR_IMAGE_UNSUPPORTED_FILE_TYPE',
        `${p} leads to the block device ${display}: an image opened for ${who} must not be a block device, ` +
          'since the user could name any disk they may read (pass allowBlockDevice: true to allow it)',
        { path: display },
      );
    }
    const size = kind === 'file' ? Number(opened.size) : kind === 'block' ? await blockDeviceSize(opened.rdev, display) : 0;
    const file: OpenedFileAs = {
      fd,
      kind,
      size,
      dev: Number(opened.dev),
      ino: Number(opened.ino),
      ownership: { uid: opened.uid, gid: opened.gid, mode: opened.mode },
      writable: writable && readOnlyReason === undefined,
      path: display,
    };
    if (readOnlyReason !== undefined) file.readOnlyReason = readOnlyReason;
    return file;
  } catch (err) {
    await closeAddonFd(fd).catch(() => undefined);
    throw err;
  }
}
