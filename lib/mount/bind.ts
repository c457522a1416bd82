// Bind mounts with the image defaults (read-only, nosuid, nodev, private propagation), for
// sandbox directories. With the new mount API the clone gets its attributes before it is
// attached anywhere (no moment where it is writable or setuid-capable) and can be moved into
// another mount namespace; mount(2) needs a bind and then a remount.

import { throwIfAborted } from '../errors';
import { closeFd } from '../io/fd';
import { native } from '../native/binding';
import { moveMountIntoNamespace } from '../ns/mount';
import type { NamespaceTarget } from '../ns/namespace';
import { MNT_DETACH, MOUNT_ATTR_NODEV, MOUNT_ATTR_NOSUID, MOUNT_ATTR_RDONLY, MS_BIND, MS_NODEV, MS_NOSUID, MS_PRIVATE, MS_RDONLY, MS_REC, MS_REMOUNT } from './flags';
import { mount, umount } from './mount';
import { resolveMountApi, type MountApi } from './new-api';

const OPEN_TREE_CLONE = 1;
const AT_EMPTY_PATH = 0x1000;
const AT_RECURSIVE = 0x8000;
const MOVE_MOUNT_F_EMPTY_PATH = 0x4;

export interface BindMountOptions {
  /** Default true. */
  readOnly?: boolean;
  /** Default true. */
  nosuid?: boolean;
  /** Default true. */
  nodev?: boolean;
  /** Include mounts below the source (default true). */
  recursive?: boolean;
  /** Put the bind mount into this mount namespace (new mount API only). */
  namespace?: NamespaceTarget;
  api?: MountApi;
  signal?: AbortSignal;
}

/** Bind-mounts `source` on `target` with safe attributes; returns which API did it. */
export async function bindMount(source: string, target: string, options: BindMountOptions = {}): Promise<'new' | 'legacy'> {
  const readOnly = options.readOnly ?? true;
  const nosuid = options.nosuid ?? true;
  const nodev = options.nodev ?? true;
  const recursive = options.recursive ?? true;
  throwIfAborted(options.signal);
  const method = options.namespace ? 'new' : await resolveMountApi(options.api ?? 'auto');
  if (method === 'new') {
    const fd = await native((b) => b.openTree(source, OPEN_TREE_CLONE | (recursive ? AT_RECURSIVE : 0)));
    try {
      const attrSet = (readOnly ? MOUNT_ATTR_RDONLY : 0) | (nosuid ? MOUNT_ATTR_NOSUID : 0) | (nodev ? MOUNT_ATTR_NODEV : 0);
      await native((b) => b.mountSetattr(fd, '', AT_EMPTY_PATH | (recursive ? AT_RECURSIVE : 0), { attrSet, propagation: MS_PRIVATE }));
      throwIfAborted(options.signal);
      if (options.namespace) await moveMountIntoNamespace(options.namespace, fd, target);
      else await native((b) => b.moveMount(fd, '', target, MOVE_MOUNT_F_EMPTY_PATH));
    } finally {
      await closeFd(fd);
    }
    return 'new';
  }
  await mount(source, target, null, MS_BIND | (recursive ? MS_REC : 0), null, { api: 'legacy' });
  try {
    const flags = MS_BIND | MS_REMOUNT | (readOnly ? MS_RDONLY : 0) | (nosuid ? MS_NOSUID : 0) | (nodev ? MS_NODEV : 0);
    await mount(null, target, null, flags, null, { api: 'legacy' });
    await mount(null, target, null, MS_PRIVATE | (recursive ? MS_REC : 0), null, { api: 'legacy' });
  } catch (err) {
    await umount(target, MNT_DETACH).catch(() => undefined);
    throw err;
  }
  return 'legacy';
}
