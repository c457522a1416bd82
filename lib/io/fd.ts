// File descriptors the library opens itself (images, loop devices, namespace and mount
// fds): opened, closed and stat'ed off the event loop (libuv's pool, or the addon's for the
// addon's fds). Closing a detached mount's fd can tear down a whole mount tree, so it is not
// "always cheap".
//
// An fd goes back the way it came. In a worker thread Node closes, at the worker's exit, every
// fd fs.open gave it that fs.close did not take back: an fd from openFd closed by the addon
// would be closed a second time then, by number, when that number may be another thread's
// file (test/kernel/loop/share.test.ts, "works from worker_threads", caught exactly that). And
// fs.close of an fd the addon opened makes Node warn in a worker ("closed but not opened in
// unmanaged mode"). So: closeFd for openFd's fds, closeAddonFd for the addon's (openImage,
// openAs), on the addon's threads, where the thread still awake from the call before takes it.

import * as fs from 'node:fs';
import { native } from '../native/binding';

export function openFd(path: string, flags: number, mode?: number): Promise<number> {
  return new Promise((resolve, reject) => fs.open(path, flags, mode, (err, fd) => (err ? reject(err) : resolve(fd))));
}

export function closeFd(fd: number): Promise<void> {
  return new Promise((resolve, reject) => fs.close(fd, (err) => (err ? reject(err) : resolve())));
}

/** Closes an fd a native call opened (image fds from openImage and openAs). */
export function closeAddonFd(fd: number): Promise<void> {
  return native((b) => b.closeFd(fd));
}

/** Closes `fd` the way it was opened: by the addon (`addon`), or by fs.open. */
export function closeFdFrom(fd: number, addon: boolean): Promise<void> {
  return addon ? closeAddonFd(fd) : closeFd(fd);
}

export function fstatFd(fd: number): Promise<fs.Stats> {
  return new Promise((resolve, reject) => fs.fstat(fd, (err, st) => (err ? reject(err) : resolve(st))));
}

/** fstat with 64-bit fields as bigints (device and inode numbers compared exactly). */
export function fstatFdBig(fd: number): Promise<fs.BigIntStats> {
  return new Promise((resolve, reject) => fs.fstat(fd, { bigint: true }, (err, st) => (err ? reject(err) : resolve(st))));
}
