// What filesystem a partition holds, read from its superblock: compression for squashfs,
// geometry and features for ext3. Driver selection and `imgmount inspect` both need it.

import { preadFully } from '../io/byte-source';
import { EXT3, PARTITION_PROBE_SIZE, SQUASHFS } from './constants';
import { checkExt3Header, type Ext3Info } from './ext3';
import type { Image } from './image';
import type { Section } from './section';
import { checkSquashfsHeader, type SquashfsInfo } from './squashfs';

export interface PartitionFsInfo {
  squashfs?: SquashfsInfo;
  ext3?: Ext3Info;
}

/** Reads the superblock of a squashfs or ext3 partition (other types: an empty object). */
export async function readPartitionInfo(image: Image, partition: Section): Promise<PartitionFsInfo> {
  image.assertOpen();
  if (partition.type !== SQUASHFS && partition.type !== EXT3) return {};
  const length = Math.min(PARTITION_PROBE_SIZE, partition.size);
  const head = image.cachedSuperblock(partition.offset, length) ?? (await preadFully(image.fd, partition.offset, length));
  // Partitions already start at the filesystem (detection skipped any launch header).
  const opts = { launchHeader: false, size: partition.size };
  return partition.type === SQUASHFS ? { squashfs: checkSquashfsHeader(head, opts) } : { ext3: checkExt3Header(head, opts) };
}
