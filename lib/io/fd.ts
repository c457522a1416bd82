// File descriptors the library opens itself (images, loop devices, namespace and mount
// fds): closed and stat'ed on the libuv pool, never on the event loop. Closing a detached
// mount's fd can tear down a whole mount tree, so it is not "always cheap".

import * as fs from 'node:fs';

export function openFd(path: string, flags: number, mode?: number): Promise<number> {
  return new Promise((resolve, reject) => fs.open(path, flags, mode, (err, fd) => (err ? reject(err) : resolve(fd))));
}

export function closeFd(fd: number): Promise<void> {
  return new Promise((resolve, reject) => fs.close(fd, (err) => (err ? reject(err) : resolve())));
}

export function fstatFd(fd: number): Promise<fs.Stats> {
  return new Promise((resolve, reject) => fs.fstat(fd, (err, st) => (err ? reject(err) : resolve(st))));
}

/** fstat with 64-bit fields as bigints (device and inode numbers compared exactly). */
export function fstatFdBig(fd: number): Promise<fs.BigIntStats> {
  return new Promise((resolve, reject) => fs.fstat(fd, { bigint: true }, (err, st) => (err ? reject(err) : resolve(st))));
}
