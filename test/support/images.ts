// Test images built once per run under testTmp from deterministic inputs (fixed times, ids
// and UUIDs), so every run mounts the same bytes:
//  - squashfs and ext3 images of a small tree,
//  - a SIF-like file: a 32 KiB header region, then the squashfs at 32768 and the ext3 at the
//    next 4 KiB boundary, then 8 KiB of 0xAA (so a missing size limit would show),
//  - the squashfs behind a 31-byte legacy launch header (offset 31),
//  - a squashfs whose superblock names lzma, which this kernel does not decompress.
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
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
  'hello.txt': 'hello from imgmount\n',
  'sub/deep/file.txt': 'deep inside\n',
};

/** The real Apptainer-built SIF: squashfs PrimSys partition at 45056, 745472 bytes. */
export const busyboxSif = {
  path: path.join(sharedDir, 'fixtures', 'sif', 'apptainer', 'busybox_amd64.sif'),
  offset: 45056,
  size: 745472,
};

const SIF_DATA_OFFSET = 32768;
const EXT3_UUID = '2f2ce1f7-0000-4000-8000-696d676d6e74';
let built: TestImages | undefined;

function align(n: number, a: number): number {
  return Math.ceil(n / a) * a;
}

export function testImages(): TestImages {
  if (built) return built;
  const dir = path.join(testTmp, 'images');
  const tree = path.join(dir, 'tree');
  for (const [rel, content] of Object.entries(FILES)) {
    fs.mkdirSync(path.dirname(path.join(tree, rel)), { recursive: true });
    fs.writeFileSync(path.join(tree, rel), content);
  }
  const env: NodeJS.ProcessEnv = { ...process.env, E2FSPROGS_FAKE_TIME: '1' };
  delete env.SOURCE_DATE_EPOCH; // mksquashfs refuses it together with -mkfs-time and -all-time
  const squashfs = path.join(dir, 'image.sqfs');
  execFileSync('mksquashfs', [tree, squashfs, '-noappend', '-all-root', '-mkfs-time', '0', '-all-time', '0', '-quiet', '-no-progress'], { env, stdio: 'ignore' });
  const ext3 = path.join(dir, 'image.ext3');
  fs.writeFileSync(ext3, '');
  fs.truncateSync(ext3, 8 << 20);
  execFileSync(
    'mkfs.ext3',
    ['-q', '-F', '-U', EXT3_UUID, '-E', `root_owner=0:0,hash_seed=${EXT3_UUID}`, '-d', tree, ext3],
    { env, stdio: 'ignore' },
  );

  const sq = fs.readFileSync(squashfs);
  const ex = fs.readFileSync(ext3);
  const sqPart = { offset: SIF_DATA_OFFSET, size: sq.length };
  const exPart = { offset: align(sqPart.offset + sq.length, 4096), size: ex.length };
  const header = Buffer.alloc(SIF_DATA_OFFSET);
  header.write('#!/usr/bin/env run-singularity\nSIF_MAGIC\0', 0, 'latin1');
  const sif = path.join(dir, 'image.sif');
  const out = Buffer.alloc(exPart.offset + ex.length + 8192, 0xaa);
  header.copy(out, 0);
  out.fill(0, sqPart.offset, exPart.offset);
  sq.copy(out, sqPart.offset);
  ex.copy(out, exPart.offset);
  fs.writeFileSync(sif, out);

  const hdr = Buffer.from('#!/usr/bin/env run-singularity\n');
  const legacyHeader = path.join(dir, 'legacy-header.sqfs');
  fs.writeFileSync(legacyHeader, Buffer.concat([hdr, sq]));

  // Squashfs superblock: compression id is the u16 at byte 20 (1 gzip, 2 lzma, ...).
  const lzma = Buffer.from(sq);
  lzma.writeUInt16LE(2, 20);
  const lzmaSquashfs = path.join(dir, 'lzma.sqfs');
  fs.writeFileSync(lzmaSquashfs, lzma);

  built = {
    tree,
    squashfs,
    ext3,
    sif,
    sifParts: { squashfs: sqPart, ext3: exPart },
    legacyHeader,
    legacyHeaderOffset: hdr.length,
    lzmaSquashfs,
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
