// The images the kernel tests mount, copied from the generated fixtures
// (scripts/make-fixtures.ts) into testTmp so that tests may write next to them:
//  - squashfs and ext3 images of the fixture tree,
//  - a SIF (our writer) with the squashfs as root partition and the ext3 as a data
//    partition, followed by 8 KiB of 0xAA (so a missing size limit would show),
//  - the squashfs behind a 31-byte legacy launch header (offset 31),
//  - a squashfs whose superblock names lzma, which this kernel does not decompress.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fixture, runCopy } from './fixtures';
import { testTmp } from './hooks';
import { sharedDir } from './paths';

export interface Partition {
  offset: number;
  size: number;
}

export interface TestImages {
  tree: string;
  squashfs: string;
  ext3: string;
  sif: string;
  sifParts: { squashfs: Partition; ext3: Partition };
  legacyHeader: string;
  legacyHeaderOffset: number;
  lzmaSquashfs: string;
  /** Files in every image, with their content. */
  files: Record<string, string>;
}

export const FILES: Record<string, string> = {
  'etc/hello.txt': 'hello from imgmount\n',
  'bin/true.sh': '#!/bin/sh\nexit 0\n',
};

/**
 * The real Apptainer-built SIF: squashfs PrimSys partition at 45056, 745472 bytes. `path` is
 * this run's copy (loop devices are attached to files of the run only; see leaks.ts).
 */
export const busyboxSif = {
  get path(): string {
    return runCopy(path.join(sharedDir, 'fixtures', 'sif', 'apptainer', 'busybox_amd64.sif'), 'shared');
  },
  offset: 45056,
  size: 745472,
};

let built: TestImages | undefined;

/** SIF layout of sif-kernel.sif: descriptor table at 4096, slot i at 4096 + 585 i; offset/size at +17/+25. */
function sifPartition(sif: Buffer, slot: number): Partition {
  const d = 4096 + 585 * slot;
  return { offset: Number(sif.readBigInt64LE(d + 17)), size: Number(sif.readBigInt64LE(d + 25)) };
}

export function testImages(): TestImages {
  if (built) return built;
  const dir = path.join(testTmp, 'images');
  fs.mkdirSync(dir, { recursive: true });
  const copy = (name: string, as: string) => {
    const to = path.join(dir, as);
    fs.copyFileSync(fixture(name), to);
    return to;
  };
  const sif = copy('sif-kernel.sif', 'image.sif');
  const bytes = fs.readFileSync(sif);
  built = {
    tree: fixture('rootfs'),
    squashfs: copy('sq-gzip.sqfs', 'image.sqfs'),
    ext3: copy('ext3.img', 'image.ext3'),
    sif,
    sifParts: { squashfs: sifPartition(bytes, 0), ext3: sifPartition(bytes, 1) },
    legacyHeader: copy('hdr-lf.sqfs', 'legacy-header.sqfs'),
    legacyHeaderOffset: 31,
    lzmaSquashfs: copy('sq-lzma.sqfs', 'lzma.sqfs'),
    files: FILES,
  };
  return built;
}

/** A fresh empty directory under testTmp to mount on. */
let dirs = 0;
export function mountDir(name = 'mnt'): string {
  const d = path.join(testTmp, 'mnt', `${name}-${++dirs}`);
  fs.mkdirSync(d, { recursive: true });
  return d;
}
