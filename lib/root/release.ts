// releaseMount(): undo whatever imgmount mounted at a target, from any process. With a mount
// record (FUSE helpers, overlay layers, data partitions) everything it names is released in
// order, including the records of FUSE mounts inside it; a plain kernel mount is just
// unmounted (its loop device autoclears).

import * as path from 'node:path';
import { targetName } from '../path/pinned';
import { findMountRecord } from '../drivers/mount-record';
import { releaseMountRecord } from '../drivers/fuse/release';
import { umount } from '../mount/mount';
import { unmountInNamespace } from '../mount/in-namespace';
import { mountNamespaceInode, type NamespaceTarget } from '../ns/namespace';

export interface ReleaseOptions {
  /** The target is a path in this mount namespace (a container's), where it was mounted with `namespace`. */
  namespace?: NamespaceTarget;
  signal?: AbortSignal;
}

/**
 * Unmounts `target` and everything imgmount built for it. The target itself is never stat'ed
 * or opened (a hung FUSE mount there costs no thread): its record is found by name.
 */
export async function releaseMount(target: string, options: ReleaseOptions = {}): Promise<void> {
  if (options.namespace) {
    const abs = path.resolve(target);
    const record = await findMountRecord(abs, await mountNamespaceInode(options.namespace));
    if (record) await releaseMountRecord(record, options.signal ? { signal: options.signal } : {});
    else await unmountInNamespace(options.namespace, abs, 0, options.signal ? { signal: options.signal } : {});
    return;
  }
  const abs = await targetName(target).catch(() => path.resolve(target));
  const record = await findMountRecord(abs);
  if (!record) {
    await umount(abs, 0, { busyRetries: 5, ...(options.signal ? { signal: options.signal } : {}) });
    return;
  }
  await releaseMountRecord(record, options);
  // Layers that were FUSE mounts have records of their own (helpers, session dirs); their
  // mounts are gone now, so this stops what served them and removes the records.
  for (const inner of [...(record.nestedMounts ?? []), ...record.internalMounts]) {
    const innerRecord = await findMountRecord(inner);
    if (innerRecord) await releaseMountRecord(innerRecord, options);
  }
}
