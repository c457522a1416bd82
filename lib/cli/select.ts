// Choosing a partition from the command line: by name, by SIF descriptor id, or the root
// filesystem by default.

import { ImgmountError } from '../errors';
import type { Image } from '../image/image';
import type { Section } from '../image/section';
import { UsageError } from './usage';

export interface PartitionChoice {
  partition?: string;
  id?: string;
}

/** The partition the user named (`--partition NAME` or `--id N`), else the root filesystem. */
export function choosePartition(image: Image, choice: PartitionChoice): Section {
  if (choice.partition !== undefined && choice.id !== undefined) throw new UsageError('give --partition or --id, not both');
  if (choice.id !== undefined) {
    if (!/^[1-9]\d*$/.test(choice.id)) throw new UsageError(`--id takes a SIF object id (1, 2, ...), not "${choice.id}"`);
    const id = Number(choice.id);
    const p = image.partitions.find((x) => x.id === id);
    if (!p) throw new ImgmountError('ERR_NO_PARTITION', `${image.path} has no partition with id ${id}`, { path: image.path });
    return p;
  }
  if (choice.partition !== undefined) {
    const p = image.partitions.find((x) => x.name === choice.partition);
    if (!p) throw new ImgmountError('ERR_NO_PARTITION', `${image.path} has no partition named "${choice.partition}"`, { path: image.path });
    return p;
  }
  return image.getRootFsPartition();
}
