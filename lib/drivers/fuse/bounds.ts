// FUSE helpers have no size limit (squashfuse and fuse2fs take an offset only; Apptainer's
// MountParams.Size is ignored by its fuseapps driver). What bounds their reads is the
// filesystem's own size: squashfs' bytes_used, ext's blocks_count x block_size. So before a
// helper gets a partition with a known size, its superblock is read from the same fd the helper
// will use and that size checked against the partition's; a partition whose filesystem claims
// more (a crafted image reaching into the partitions after it) is refused.

import * as fs from 'node:fs';
import { promisify } from 'node:util';
import { ImgmountError } from '../../errors';
import { checkExt3Header } from '../../image/ext3';
import { checkSquashfsHeader } from '../../image/squashfs';

const readAsync = promisify(fs.read);

/** Reads the superblock at `offset` of `fd` and checks the filesystem fits in `size` bytes (size 0: unknown, not checked). */
export async function checkPartitionBounds(fd: number, kind: 'squashfs' | 'ext3', offset: number, size: number, imageName: string | (() => Promise<string>)): Promise<void> {
  if (!(size > 0)) return;
  const buf = Buffer.alloc(kind === 'squashfs' ? 96 : 2048);
  const { bytesRead } = await readAsync(fd, buf, 0, buf.length, offset);
  const head = buf.subarray(0, bytesRead);
  try {
    if (kind === 'squashfs') checkSquashfsHeader(head, { size, launchHeader: false });
    else checkExt3Header(head, { size, launchHeader: false, anyExtFeatures: true });
  } catch (cause) {
    const e = cause as ImgmountError;
    const image = typeof imageName === 'string' ? imageName : await imageName();
    throw new ImgmountError(
      e.code === 'ERR_IMAGE_UNKNOWN_FORMAT' ? 'ERR_PARTITION_INVALID' : e.code,
      `partition at offset ${offset} (${size} bytes) of ${image}: ${e.message}`,
      { cause, path: image, details: { offset, size, ...(e.details ?? {}) } },
    );
  }
}
