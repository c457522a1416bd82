// releaseMount(): undo whatever imgmount mounted at a target, from any process. With a mount
// record (FUSE helpers, overlay layers, data partitions) everything it names is released in
// order, including the records of FUSE mounts inside it; a plain kernel mount is just
// unmounted (its loop device autoclears).

import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { findMountRecord } from '../drivers/mount-record';
import { releaseMountRecord } from '../drivers/fuse/release';
import { umount } from '../mount/mount';

export interface ReleaseOptions {
  signal?: AbortSignal;
}

/** Unmounts `target` and everything imgmount built for it. */
export async function releaseMount(target: string, options: ReleaseOptions = {}): Promise<void> {
  const abs = await fs.realpath(path.resolve(target)).catch(() => path.resolve(target));
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
