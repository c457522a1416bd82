// Opening an image file safely: check the file type before open (opening a device or FIFO
// can block or have side effects), open without following a swapped-in symlink, and check
// that what was opened is what was checked.

import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import { ImgmountError, fromNodeError } from '../errors';
import { closeFd, fstatFd } from '../io/fd';

export type FileKind = 'file' | 'directory' | 'block';

export interface OpenedFile {
  fd: number;
  kind: FileKind;
  /** Bytes in the file or block device (0 for directories). */
  size: number;
  dev: number;
  ino: number;
}

function kindOf(st: fs.Stats, p: string): FileKind {
  if (st.isFile()) return 'file';
  if (st.isDirectory()) return 'directory';
  if (st.isBlockDevice()) return 'block';
  const what = st.isFIFO()
    ? 'a FIFO'
    : st.isSocket()
      ? 'a socket'
      : st.isCharacterDevice()
        ? 'a character device'
        : 'not a regular file';
  throw new ImgmountError(
    'ERR_IMAGE_UNSUPPORTED_FILE_TYPE',
    `${p} is ${what}; an image must be a regular file, a block device or a directory`,
    { path: p },
  );
}

/** Size of a block device from sysfs (no ioctl, no privilege needed). */
async function blockDeviceSize(st: fs.Stats, p: string): Promise<number> {
  // glibc's major()/minor() split of dev_t.
  const dev = BigInt(st.rdev);
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


/**
 * Opens `resolvedPath` read-only (Node adds O_CLOEXEC). O_NONBLOCK keeps a FIFO swapped in
 * after the stat from blocking the open; O_NOFOLLOW refuses a symlink swapped in.
 */
export async function openImageFile(resolvedPath: string): Promise<OpenedFile> {
  let st: fs.Stats;
  try {
    st = await fsp.stat(resolvedPath);
  } catch (err) {
    throw fromNodeError(err, `failed to stat ${resolvedPath}`);
  }
  kindOf(st, resolvedPath);
  let fd: number;
  try {
    fd = await openFd(resolvedPath, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK | fs.constants.O_NOFOLLOW);
  } catch (err) {
    throw fromNodeError(err, `failed to open ${resolvedPath}`);
  }
  try {
    const fst = await fstatFd(fd);
    if (fst.dev !== st.dev || fst.ino !== st.ino) {
      throw new ImgmountError('ERR_IMAGE_UNSUPPORTED_FILE_TYPE', `${resolvedPath} changed while it was being opened`, {
        path: resolvedPath,
      });
    }
    const kind = kindOf(fst, resolvedPath);
    const size = kind === 'file' ? fst.size : kind === 'block' ? await blockDeviceSize(fst, resolvedPath) : 0;
    return { fd, kind, size, dev: fst.dev, ino: fst.ino };
  } catch (err) {
    await closeFd(fd).catch(() => undefined);
    throw err;
  }
}

/**
 * Opens the same file again read-write through /proc/self/fd (the same inode, whatever
 * happened to the path meanwhile), and checks it is the same file.
 */
export async function reopenReadWrite(file: OpenedFile, displayPath: string): Promise<number> {
  let fd: number;
  try {
    fd = await openFd(`/proc/self/fd/${file.fd}`, fs.constants.O_RDWR);
  } catch (err) {
    throw fromNodeError(err, `failed to open ${displayPath} for writing`);
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

