// File descriptors the library opens itself (images, loop devices, namespace and mount
// fds): opened and stat'ed on the libuv pool, closed on the addon's (see native/files.cc),
// never on the event loop. Closing a detached mount's fd can tear down a whole mount tree,
// and closing a file on FUSE or NFS waits for its server, so it is not "always cheap"; on the
// addon's pool it is taken by the thread still awake from the call before it (image.close()
// after root.close()) and holds up none of the process's fs work if it blocks.

import * as fs from 'node:fs';
import { native } from '../native/binding';

export function openFd(path: string, flags: number, mode?: number): Promise<number> {
  return new Promise((resolve, reject) => fs.open(path, flags, mode, (err, fd) => (err ? reject(err) : resolve(fd))));
}

export function closeFd(fd: number): Promise<void> {
  return native((b) => b.closeFd(fd));
}

export function fstatFd(fd: number): Promise<fs.Stats> {
  return new Promise((resolve, reject) => fs.fstat(fd, (err, st) => (err ? reject(err) : resolve(st))));
}

/** fstat with 64-bit fields as bigints (device and inode numbers compared exactly). */
export function fstatFdBig(fd: number): Promise<fs.BigIntStats> {
  return new Promise((resolve, reject) => fs.fstat(fd, { bigint: true }, (err, st) => (err ? reject(err) : resolve(st))));
}
