// What serves a mount, written down so that another process (`imgmount umount TARGET`, or a
// daemon after a restart) can release it: FUSE helper processes, internal mounts that could
// not be detached, and the session directory holding them. Kernel mounts need no record:
// their loop devices are autoclear and go with the unmount.
//
// Records live in IMGMOUNT_STATE_DIR (default /run/imgmount, a tmpfs: gone after a reboot,
// like the mounts they describe), one JSON file per (mount namespace, target).

import { createHash } from 'node:crypto';
import { hasErrorCode } from '../errors';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import type { DriverName } from './types';

export interface HelperRecord {
  program: string;
  pid: number;
  /** Process start time (field 22 of /proc/PID/stat), so a reused pid is never signalled. */
  startTime: string;
}

export interface MountRecord {
  target: string;
  /** Inode of the mount namespace the target is in (from /proc/self/ns/mnt). */
  mntns: string;
  driver: DriverName;
  fstype: string;
  /** Helpers serving the target and its internal mounts, in start order. */
  helpers: HelperRecord[];
  /** Mounts below the target (data partitions) to unmount before it. */
  nestedMounts?: string[];
  /** Internal mounts to unmount after the target, in that order. */
  internalMounts: string[];
  /** Directory holding the internal mount points, removed last. */
  sessionDir?: string;
  /** More session directories (a root whose top layer is a FUSE mount with its own). */
  moreSessionDirs?: string[];
  created: string;
}

export function stateDir(): string {
  return process.env.IMGMOUNT_STATE_DIR ?? '/run/imgmount';
}

function recordsDir(): string {
  return path.join(stateDir(), 'mounts');
}

/** The mount namespace of this process, as its inode number. */
export async function currentMountNamespace(): Promise<string> {
  const link = await fs.readlink('/proc/self/ns/mnt');
  return /\[(\d+)\]/.exec(link)?.[1] ?? link;
}

function recordPath(mntns: string, target: string): string {
  const key = createHash('sha256').update(`${mntns}\0${target}`).digest('hex').slice(0, 32);
  return path.join(recordsDir(), `${key}.json`);
}

/** Start time of a process, or null if it does not exist. */
export async function processStartTime(pid: number): Promise<string | null> {
  try {
    const stat = await fs.readFile(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19] ?? null;
  } catch {
    return null;
  }
}

export async function saveMountRecord(record: MountRecord): Promise<void> {
  await fs.mkdir(recordsDir(), { recursive: true, mode: 0o700 });
  const file = recordPath(record.mntns, record.target);
  const tmp = `${file}.${process.pid}.tmp`;
  await fs.writeFile(tmp, JSON.stringify(record, null, 2) + '\n', { mode: 0o600 });
  await fs.rename(tmp, file);
}

export async function findMountRecord(target: string, mntns?: string): Promise<MountRecord | undefined> {
  const ns = mntns ?? (await currentMountNamespace());
  try {
    return JSON.parse(await fs.readFile(recordPath(ns, target), 'utf8')) as MountRecord;
  } catch {
    return undefined;
  }
}

export async function removeMountRecord(target: string, mntns?: string): Promise<void> {
  const ns = mntns ?? (await currentMountNamespace());
  await fs.rm(recordPath(ns, target), { force: true });
}

/** Removes a session directory: its files and (empty) directories, never crossing into a mount. */
export async function removeSessionDir(dir: string): Promise<void> {
  let names: string[] = [];
  try {
    names = await fs.readdir(dir);
  } catch (err) {
    if (hasErrorCode(err, 'ENOENT')) return;
    throw err;
  }
  for (const n of names) {
    const p = path.join(dir, n);
    const st = await fs.lstat(p).catch(() => null);
    if (!st) continue;
    if (st.isDirectory()) await fs.rmdir(p);
    else await fs.unlink(p);
  }
  await fs.rmdir(dir);
}

