// The Node floor: the main job's five awaits (open and read the image's head, attach + mount,
// stat, unmount, close) as raw native calls of our addon and fs.promises, with no library logic
// between them: no detection, driver choice, record, guard or handle. What an async Node program
// cannot go below on this machine, whatever it does in JavaScript: row 1's other bound, beside
// the C floor, which has no thread hop at all. Its loop device has the block size the library
// gives the partition (4 KiB for the workload's squashfs: lib/loop/block-size.ts), so that it
// stays the least for the same job.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { loopBlockSizeFor } from '../../lib/loop/block-size';
import { LO_FLAGS_AUTOCLEAR, LO_FLAGS_READ_ONLY } from '../../lib/loop/constants';
import { MOUNT_ATTR_NODEV, MOUNT_ATTR_NOSUID, MOUNT_ATTR_RDONLY } from '../../lib/mount/flags';
import { binding } from '../../lib/native/binding';
import { RESOLVE_NO_SYMLINKS } from '../../lib/path/pinned';
import type { Workload } from './workload';

const S_IFREG = fs.constants.S_IFREG;

/** One batch: mean microseconds per cycle. */
export async function nodeFloorBatch(w: Workload, dir: string, cycles: number): Promise<number> {
  const b = binding();
  const window = Buffer.allocUnsafe(64 * 1024);
  const probe = path.join(dir, w.inside);
  const blockSize = loopBlockSizeFor(w.fstype, w.offset, w.size);
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < cycles; i++) {
    const image = await b.openImage(w.image, { checkWrite: false, acceptTypes: [S_IFREG], window });
    const mounted = await b.loopAttachMount(
      {
        method: 'configure',
        imageFd: image.fd,
        imagePath: w.image,
        device: -1,
        openReadOnly: true,
        blockSize,
        offset: w.offset,
        sizeLimit: w.size,
        flags: LO_FLAGS_READ_ONLY | LO_FLAGS_AUTOCLEAR,
        fileName: '',
        injectErrno: 0,
      } as never,
      {
        api: 'new',
        fstype: w.fstype,
        target: dir,
        options: [['ro', null]],
        attrs: MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV,
        detached: false,
        keepMountFd: false,
        pin: { path: dir, resolve: RESOLVE_NO_SYMLINKS, expectName: dir, refuseIds: new BigUint64Array(0), refuseDevs: new BigUint64Array(0) },
      },
      false,
    );
    await fs.promises.stat(probe);
    await b.umountAt(mounted.target!.fd, '', 0, dir, false, true);
    await new Promise<void>((resolve, reject) => fs.close(image.fd, (err) => (err ? reject(err) : resolve())));
  }
  return Number(process.hrtime.bigint() - t0) / 1000 / cycles;
}
