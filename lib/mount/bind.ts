// Bind mounts with the image defaults (read-only, nosuid, nodev, private propagation), for
// sandbox directories. With the new mount API the clone gets its attributes before it is
// attached anywhere (no moment where it is writable or setuid-capable) and can be moved into
// another mount namespace; mount(2) needs a bind and then a remount of the new mount's root.
// The target is pinned (see lib/path): the bind lands on the directory that was checked.

import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { ImgmountError } from '../errors';
import { checkpoint } from '../util/checkpoint';
import { closeFd } from '../io/fd';
import { native } from '../native/binding';
import { moveMountIntoNamespace, unmountInNamespace } from './in-namespace';
import type { NamespaceTarget } from '../ns/namespace';
import { PinnedDir, openMountBeneath, openMountRoot, pinTarget } from '../path/pinned';
import {
  MNT_DETACH,
  MOUNT_ATTR_NODEV,
  MOUNT_ATTR_NOEXEC,
  MOUNT_ATTR_NOSUID,
  MOUNT_ATTR_RDONLY,
  MS_BIND,
  MS_NOATIME,
  MS_NODEV,
  MS_NODIRATIME,
  MS_NOEXEC,
  MS_NOSUID,
  MS_NOSYMFOLLOW,
  MS_PRIVATE,
  MS_RDONLY,
  MS_REC,
  MS_RELATIME,
  MS_REMOUNT,
  MS_STRICTATIME,
} from './flags';
import { mount, umount } from './mount';
import { readMountInfo, type MountInfoEntry } from './mountinfo';
import { resolveMountApi, type MountApi } from './new-api';

const OPEN_TREE_CLONE = 1;
const AT_EMPTY_PATH = 0x1000;
const AT_RECURSIVE = 0x8000;
const MOVE_MOUNT_F_EMPTY_PATH = 0x4;
const MOVE_MOUNT_T_EMPTY_PATH = 0x40;

export interface BindMountOptions {
  /** Default true. */
  readOnly?: boolean;
  /** Default true. */
  nosuid?: boolean;
  /** Default true. */
  nodev?: boolean;
  /** Default false. */
  noexec?: boolean;
  /** Include mounts below the source (default true). */
  recursive?: boolean;
  /** Put the bind mount into this mount namespace (new mount API only); `target` is a path there. */
  namespace?: NamespaceTarget;
  api?: MountApi;
  signal?: AbortSignal;
}

/** The id mountinfo gives the mount an fd is on (fdinfo's mnt_id; statx may give the 64-bit unique id instead). */
async function mountTableId(dir: PinnedDir): Promise<number> {
  const info = await fsp.readFile(`/proc/self/fdinfo/${dir.fd}`, 'utf8');
  const m = /^mnt_id:\s*(\d+)$/m.exec(info);
  if (!m) throw new ImgmountError('ERR_MOUNT_FAILED', `no mount id for ${dir.path} in /proc/self/fdinfo`);
  return Number(m[1]);
}

const PER_MOUNT: Record<string, number> = {
  ro: MS_RDONLY,
  nosuid: MS_NOSUID,
  nodev: MS_NODEV,
  noexec: MS_NOEXEC,
  noatime: MS_NOATIME,
  nodiratime: MS_NODIRATIME,
  relatime: MS_RELATIME,
  strictatime: MS_STRICTATIME,
  nosymfollow: MS_NOSYMFOLLOW,
};

function keptFlags(options: readonly string[]): number {
  return options.reduce((f, o) => f | (PER_MOUNT[o] ?? 0), 0);
}

/**
 * A remount with mount(2) changes one mount, so the submounts a recursive bind brought along
 * are remounted one by one (parents first), each reached by fd beneath the new tree's root and
 * checked to be that submount (mount id) before it is changed. A submount hidden under another
 * mount on the same mount point cannot be reached by any path and is left as it was; the new
 * mount API (mount_setattr with AT_RECURSIVE) has no such gap.
 */
async function remountSubmounts(root: PinnedDir, flags: number): Promise<void> {
  const entries = await readMountInfo();
  const topId = await mountTableId(root);
  const top = entries.find((e) => e.id === topId);
  if (!top) throw new ImgmountError('ERR_MOUNT_FAILED', `the bind mount at ${root.path} is not in this namespace's mount table`);
  const below: MountInfoEntry[] = [];
  for (let i = -1, id = top.id; i < below.length; id = below[++i]?.id ?? -1) {
    for (const e of entries) if (e.parentId === id && e.id !== id) below.push(e);
  }
  for (const sub of below) {
    if (below.some((e) => e.parentId === sub.id && e.mountPoint === sub.mountPoint)) continue; // hidden
    const dir = await openMountBeneath(root, path.relative(top.mountPoint, sub.mountPoint) || '.');
    try {
      const found = await mountTableId(dir);
      if (found !== sub.id)
        throw new ImgmountError('ERR_MOUNT_FAILED', `the submount at ${sub.mountPoint} changed while the bind mount at ${root.path} was being made safe`, {
          details: { expected: sub.id, found },
        });
      // mount(2) sets exactly the flags given: keep what the submount had (as mount_setattr does).
      await native((b) => b.mount(null, dir.procPath, null, flags | keptFlags(sub.mountOptions), null));
    } finally {
      await dir.close();
    }
  }
}

/**
 * Bind-mounts `source` on `target` with safe attributes; returns which API did it. A string
 * target is pinned (and refused if it is a system directory); a PinnedDir stays the caller's.
 */
export async function bindMount(source: string, target: string | PinnedDir, options: BindMountOptions = {}): Promise<'new' | 'legacy'> {
  const readOnly = options.readOnly ?? true;
  const nosuid = options.nosuid ?? true;
  const nodev = options.nodev ?? true;
  const noexec = options.noexec ?? false;
  const recursive = options.recursive ?? true;
  const signal = options.signal;
  checkpoint('bindMount:start', signal);
  const method = options.namespace ? 'new' : await resolveMountApi(options.api ?? 'auto');
  if (options.namespace && target instanceof PinnedDir) throw new TypeError('bindMount: a target in another namespace is a path there, not a PinnedDir');
  const own = !options.namespace && !(target instanceof PinnedDir) ? await pinTarget(target) : undefined;
  const pinned = target instanceof PinnedDir ? target : own;
  try {
    checkpoint('bindMount:pinned', signal);
    if (method === 'new') {
      const fd = await native((b) => b.openTree(-1, source, OPEN_TREE_CLONE | (recursive ? AT_RECURSIVE : 0)));
      try {
        checkpoint('bindMount:cloned', signal);
        const attrSet = (readOnly ? MOUNT_ATTR_RDONLY : 0) | (nosuid ? MOUNT_ATTR_NOSUID : 0) | (nodev ? MOUNT_ATTR_NODEV : 0) | (noexec ? MOUNT_ATTR_NOEXEC : 0);
        await native((b) => b.mountSetattr(fd, '', AT_EMPTY_PATH | (recursive ? AT_RECURSIVE : 0), { attrSet, propagation: MS_PRIVATE }));
        checkpoint('bindMount:attributes', signal);
        if (options.namespace) await moveMountIntoNamespace(options.namespace, fd, target as string);
        else await native((b) => b.moveMount(fd, '', pinned!.fd, '', MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH));
      } finally {
        await closeFd(fd);
      }
      try {
        checkpoint('bindMount:mounted', signal);
      } catch (err) {
        if (options.namespace) await unmountInNamespace(options.namespace, target as string, MNT_DETACH).catch(() => undefined);
        else await umount(pinned!, MNT_DETACH).catch(() => undefined);
        throw err;
      }
      return 'new';
    }
    await mount(source, pinned!, null, MS_BIND | (recursive ? MS_REC : 0), null, { api: 'legacy' });
    try {
      checkpoint('bindMount:bound', signal);
      // Remounts act on the new mount's root, which the pinned fd (the dentry below it) is not.
      const root = await openMountRoot(pinned!);
      try {
        const flags = MS_BIND | MS_REMOUNT | (readOnly ? MS_RDONLY : 0) | (nosuid ? MS_NOSUID : 0) | (nodev ? MS_NODEV : 0) | (noexec ? MS_NOEXEC : 0);
        await native((b) => b.mount(null, root.procPath, null, flags, null));
        if (recursive) await remountSubmounts(root, flags);
        await native((b) => b.mount(null, root.procPath, null, MS_PRIVATE | (recursive ? MS_REC : 0), null));
      } finally {
        await root.close();
      }
      checkpoint('bindMount:mounted', signal);
    } catch (err) {
      await umount(pinned!, MNT_DETACH).catch(() => undefined);
      throw err;
    }
    return 'legacy';
  } finally {
    await own?.close();
  }
}
