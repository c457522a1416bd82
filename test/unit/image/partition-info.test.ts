// readPartitionInfo() against what the filesystem tools read from the same bytes: unsquashfs
// (-s, -mkfs-time, -o OFFSET) for squashfs, dumpe2fs -h ('FILE?offset=N') for ext3. Partition
// offsets inside SIFs come from the descriptor bytes, not from the library.
import { expect } from 'chai';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import { init, readPartitionInfo } from '../../../lib';
import { ImgmountError } from '../../../lib/errors';
import { fixture } from '../../support/fixtures';

/** What unsquashfs says of the squashfs at `offset` in `file`. */
function unsquashfs(file: string, offset: number) {
  const s = execFileSync('unsquashfs', ['-s', '-o', String(offset), file], { encoding: 'utf8' });
  const num = (re: RegExp): number => Number(re.exec(s)![1]);
  return {
    compression: /^Compression (\w+)$/m.exec(s)![1],
    blockSize: num(/^Block size (\d+)$/m),
    bytesUsed: num(/^Filesystem size (\d+) bytes/m),
    inodes: num(/^Number of inodes (\d+)$/m),
    mkfsTime: Number(execFileSync('unsquashfs', ['-mkfs-time', '-o', String(offset), file], { encoding: 'utf8' }).trim()),
  };
}

/** ext feature names dumpe2fs prints, as superblock bits: [field, bit]. */
const EXT_FEATURES: Record<string, ['compat' | 'incompat' | 'roCompat', number]> = {
  has_journal: ['compat', 0x4],
  ext_attr: ['compat', 0x8],
  resize_inode: ['compat', 0x10],
  dir_index: ['compat', 0x20],
  filetype: ['incompat', 0x2],
  sparse_super: ['roCompat', 0x1],
  large_file: ['roCompat', 0x2],
};

/** What dumpe2fs says of the ext file system at `offset` in `file`. */
function dumpe2fs(file: string, offset: number) {
  const s = execFileSync('dumpe2fs', ['-h', offset ? `${file}?offset=${offset}` : file], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
  const field = (name: string): string => new RegExp(`^${name}:\\s+(.*)$`, 'm').exec(s)![1]!.trim();
  const bits = { compat: 0, incompat: 0, roCompat: 0 };
  for (const f of field('Filesystem features').split(/\s+/)) {
    const known = EXT_FEATURES[f];
    if (!known) throw new Error(`dumpe2fs names a feature this test does not map: ${f}`);
    bits[known[0]] |= known[1];
  }
  return {
    blockSize: Number(field('Block size')),
    blocksCount: Number(field('Block count')),
    label: field('Filesystem volume name'),
    uuid: field('Filesystem UUID'),
    ...bits,
  };
}

/** Offset of descriptor slot `i` of a SIF our writer made (table at 4096, 585-byte slots, offset at +17). */
function sifSlotOffset(sif: string, slot: number): number {
  return Number(fs.readFileSync(sif).readBigInt64LE(4096 + 585 * slot + 17));
}

describe('readPartitionInfo', () => {
  for (const comp of ['gzip', 'xz', 'lz4', 'lzo', 'zstd']) {
    it(`squashfs (${comp}): compression, block size, bytes used, inodes and mkfs time as unsquashfs reads them`, async () => {
      const file = fixture(`sq-${comp}.sqfs`);
      await using img = await init(file);
      const info = await readPartitionInfo(img, img.getRootFsPartition());
      expect(info.ext3).to.equal(undefined);
      expect(info.squashfs).to.deep.include({ ...unsquashfs(file, 0), major: 4, minor: 0 });
    });
  }

  it('squashfs behind a launch header: the partition starts after the header (unsquashfs -o 31)', async () => {
    const file = fixture('hdr-lf.sqfs');
    expect(fs.readFileSync(file).subarray(31, 35).toString('latin1')).to.equal('hsqs');
    await using img = await init(file);
    const part = img.getRootFsPartition();
    expect(part.offset).to.equal(31);
    expect((await readPartitionInfo(img, part)).squashfs).to.deep.include(unsquashfs(file, 31));
  });

  it('every partition of a SIF, at the offsets its descriptors give: squashfs (gzip, xz) and ext3', async () => {
    const sif = fixture('sif-data.sif');
    await using img = await init(sif);
    const [rootfs, data, scratch] = img.getAllPartitions();
    expect([rootfs!.offset, data!.offset, scratch!.offset]).to.deep.equal([0, 1, 2].map((i) => sifSlotOffset(sif, i)));
    expect((await readPartitionInfo(img, rootfs!)).squashfs).to.deep.include(unsquashfs(sif, rootfs!.offset));
    expect((await readPartitionInfo(img, data!)).squashfs).to.deep.include({ ...unsquashfs(sif, data!.offset), compression: 'xz' });
    const ext = (await readPartitionInfo(img, scratch!)).ext3!;
    expect(ext).to.deep.include(dumpe2fs(sif, scratch!.offset));
    expect(ext.fsSize).to.equal(ext.blocksCount * ext.blockSize);
  });

  it('ext3 image: geometry, label, UUID and feature bits as dumpe2fs reads them', async () => {
    const file = fixture('ext3.img');
    await using img = await init(file);
    const info = await readPartitionInfo(img, img.getRootFsPartition());
    expect(info.squashfs).to.equal(undefined);
    expect(info.ext3).to.deep.include({ ...dumpe2fs(file, 0), offset: 0, fsSize: fs.statSync(file).size });
  });

  it('a sandbox directory has no superblock: an empty object; a closed image is ERR_IMAGE_CLOSED', async () => {
    const img = await init(fixture('rootfs'));
    expect(await readPartitionInfo(img, img.getRootFsPartition())).to.deep.equal({});
    const sq = await init(fixture('sq-gzip.sqfs'));
    const part = sq.getRootFsPartition();
    await sq.close();
    await img.close();
    const err = await readPartitionInfo(sq, part).catch((e: unknown) => e);
    expect(err).to.be.instanceOf(ImgmountError);
    expect((err as ImgmountError).code).to.equal('ERR_IMAGE_CLOSED');
  });
});
