// Launch header, squashfs and ext3 superblock checks on buffers (no files, no privilege).
import { expect } from 'chai';
import * as fs from 'node:fs';
import {
  ImgmountError,
  NotThisFormat,
  checkExt3Header,
  checkSquashfsHeader,
  getSquashfsComp,
  parseLaunchHeader,
} from '../../../lib';
import { fixture } from '../../support/fixtures';
import { dumpe2fsFacts, unsquashfsFacts } from '../../support/fs-tools';

const read = (name: string) => fs.readFileSync(fixture(name));

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    return (err as ImgmountError).code;
  }
  return undefined;
}

describe('launch header', () => {
  it('has none when the file does not start with #!', () => {
    expect(parseLaunchHeader(Buffer.from('hsqs...'))).to.deep.equal({ length: 0 });
    expect(parseLaunchHeader(Buffer.alloc(0))).to.deep.equal({ length: 0 });
  });

  it('is the first line for LF, CRLF and extra arguments (Apptainer got the last two wrong)', () => {
    const ls = '#!/usr/bin/env run-singularity';
    expect(parseLaunchHeader(Buffer.from(`${ls}\nxx`))).to.deep.equal({ length: 31, line: ls });
    expect(parseLaunchHeader(Buffer.from(`${ls}\r\nxx`))).to.deep.equal({ length: 32, line: ls });
    expect(parseLaunchHeader(Buffer.from(`${ls} --app x\n`))).to.deep.equal({ length: 39, line: `${ls} --app x` });
  });

  it('is undefined when the #! line has no end within 2 KiB', () => {
    expect(parseLaunchHeader(Buffer.from('#!' + 'x'.repeat(3000)))).to.equal(undefined);
  });
});

describe('checkSquashfsHeader', () => {
  for (const comp of ['gzip', 'lzo', 'lz4', 'xz', 'zstd']) {
    it(`reads a ${comp} image made by mksquashfs as unsquashfs -s does`, () => {
      const b = read(`sq-${comp}.sqfs`);
      const facts = unsquashfsFacts(fixture(`sq-${comp}.sqfs`));
      expect(facts).to.deep.include({ major: 4, compression: comp, blockSize: 131072 }); // the fixture as made
      const info = checkSquashfsHeader(b, { size: b.length });
      expect(info.compression).to.equal(facts.compression);
      expect(info.offset).to.equal(0);
      expect(info.major).to.equal(facts.major);
      expect(info.blockSize).to.equal(facts.blockSize);
      expect(info.bytesUsed).to.equal(facts.bytesUsed);
      expect(getSquashfsComp(b)).to.equal(comp);
    });
  }

  it('names legacy lzma (id 2) without refusing it here', () => {
    expect(getSquashfsComp(read('sq-lzma.sqfs'))).to.equal('lzma');
  });

  it('finds the superblock behind launch headers of every line ending', () => {
    expect(checkSquashfsHeader(read('hdr-lf.sqfs')).offset).to.equal(31);
    expect(checkSquashfsHeader(read('hdr-crlf.sqfs')).offset).to.equal(32);
    expect(checkSquashfsHeader(read('hdr-args.sqfs')).offset).to.equal(41);
  });

  it('is "not this format" (soft) without the magic', () => {
    expect(() => checkSquashfsHeader(read('ext3.img'))).to.throw(NotThisFormat, /hsqs/);
    expect(() => checkSquashfsHeader(Buffer.alloc(3))).to.throw(NotThisFormat, /too short/);
  });

  it('refuses unknown compression ids 0 and 7 as corrupt (hard)', () => {
    for (const [name, id] of [['sq-comp0.sqfs', 0], ['sq-comp7.sqfs', 7]] as const) {
      let err: unknown;
      try {
        checkSquashfsHeader(read(name));
      } catch (e) {
        err = e;
      }
      expect(err).to.be.instanceOf(ImgmountError).and.not.instanceOf(NotThisFormat);
      expect((err as ImgmountError).code).to.equal('ERR_SQUASHFS_INVALID');
      expect((err as Error).message).to.equal(`corrupted image: unknown compression algorithm value ${id}`);
    }
  });

  it('refuses big-endian, version 3 and an inconsistent block size with reasons', () => {
    expect(codeOf(() => checkSquashfsHeader(read('sq-bigendian.sqfs')))).to.equal('ERR_SQUASHFS_UNSUPPORTED');
    expect(() => checkSquashfsHeader(read('sq-v3.sqfs'))).to.throw(/version 3\.0 is not supported/);
    expect(() => checkSquashfsHeader(read('sq-badblocklog.sqfs'))).to.throw(/block size 131072 does not match block log 11/);
  });

  it('catches a filesystem larger than the space it has (truncated image)', () => {
    const b = read('sq-truncated.sqfs');
    expect(() => checkSquashfsHeader(b, { size: b.length })).to.throw(ImgmountError, /truncated image/);
    // Without a size there is nothing to compare against.
    expect(checkSquashfsHeader(b).compression).to.equal('gzip');
  });

  it('refuses a bytes_used beyond 2^53, where numbers are not exact, even without a size (found by npm run fuzz)', () => {
    const b = Buffer.from(read('sq-gzip.sqfs'));
    b.writeBigUInt64LE(2n ** 53n, 40);
    expect(() => checkSquashfsHeader(b)).to.throw(ImgmountError, /^corrupted image: squashfs bytes_used 9007199254740992 is beyond 2\^53 bytes$/);
    b.writeBigUInt64LE(2n ** 53n - 1n, 40);
    expect(checkSquashfsHeader(b).bytesUsed).to.equal(2 ** 53 - 1);
  });

  it('refuses a superblock cut short after the magic', () => {
    const b = read('sq-gzip.sqfs').subarray(0, 40);
    expect(codeOf(() => checkSquashfsHeader(b))).to.equal('ERR_SQUASHFS_INVALID');
  });
});

describe('checkExt3Header', () => {
  it('accepts mkfs.ext3 output and reports geometry as dumpe2fs -h does', () => {
    const b = read('ext3.img');
    const facts = dumpe2fsFacts(fixture('ext3.img'));
    expect(facts).to.deep.include({ blockSize: 1024, uuid: '6f8d3e1a-4b2c-4d5e-8f90-a1b2c3d4e5f6', label: 'imgmount' }); // the fixture as made
    const info = checkExt3Header(b, { size: b.length });
    expect(info.offset).to.equal(0);
    expect(info.blockSize).to.equal(facts.blockSize);
    expect(info.fsSize).to.equal(facts.blockCount * facts.blockSize);
    expect(info.fsSize).to.equal(b.length);
    expect(info.uuid).to.equal(facts.uuid);
    expect(info.label).to.equal(facts.label);
  });

  it('finds the superblock behind a launch header', () => {
    expect(checkExt3Header(read('hdr-lf.ext3')).offset).to.equal(31);
  });

  it('refuses ext2 (no journal) with a fix', () => {
    expect(() => checkExt3Header(read('ext2.img'))).to.throw(ImgmountError, /ext2 filesystem \(no journal\).*tune2fs -j/);
  });

  it('names every offending ext4 feature', () => {
    let err: ImgmountError | undefined;
    try {
      checkExt3Header(read('ext4.img'));
    } catch (e) {
      err = e as ImgmountError;
    }
    expect(err?.code).to.equal('ERR_EXT3_UNSUPPORTED_FEATURES');
    expect(err?.details?.features).to.include.members(['extent', '64bit', 'flex_bg', 'metadata_csum']);
    expect(err?.message).to.match(/recreate it with mkfs\.ext3/);
    expect(() => checkExt3Header(read('ext3-extent.img'))).to.throw(/feature extent not supported/);
    expect(() => checkExt3Header(read('ext3-metadata_csum.img'))).to.throw(/feature metadata_csum not supported/);
  });

  it('accepts any ext feature set when asked (for FUSE readers)', () => {
    expect(checkExt3Header(read('ext4.img'), { anyExtFeatures: true }).blockSize).to.equal(1024);
    expect(checkExt3Header(read('ext2.img'), { anyExtFeatures: true }).blockSize).to.equal(1024);
  });

  it('catches a truncated filesystem', () => {
    const b = read('ext3-truncated.img');
    expect(() => checkExt3Header(b, { size: b.length })).to.throw(/spans 2097152 bytes .* only 1048576/);
  });

  it('refuses a 64-bit block count whose size is beyond 2^53 bytes, even without a size (found by npm run fuzz)', () => {
    const b = Buffer.from(read('ext4.img')); // 64bit, 1 KiB blocks
    b.writeUInt32LE(0xffffffff, 1024 + 0x150);
    let err: ImgmountError | undefined;
    try {
      checkExt3Header(b, { anyExtFeatures: true });
    } catch (e) {
      err = e as ImgmountError;
    }
    expect(err?.code).to.equal('ERR_EXT3_INVALID');
    const blocks = (0xffffffffn << 32n) + BigInt(b.readUInt32LE(1024 + 4));
    expect(err?.message).to.equal(`corrupted ext superblock: ${blocks} blocks of 1024 bytes is beyond 2^53 bytes`);
    // 2^43 blocks of 1 KiB = 2^53 bytes is one too many; one block fewer is exact.
    b.writeUInt32LE(0x800, 1024 + 0x150);
    b.writeUInt32LE(0, 1024 + 4);
    expect(codeOf(() => checkExt3Header(b, { anyExtFeatures: true }))).to.equal('ERR_EXT3_INVALID');
    b.writeUInt32LE(0x7ff, 1024 + 0x150);
    b.writeUInt32LE(0xffffffff, 1024 + 4);
    expect(checkExt3Header(b, { anyExtFeatures: true }).fsSize).to.equal(2 ** 53 - 1024);
  });

  it('is "not this format" for other files, saying where it looked', () => {
    expect(() => checkExt3Header(read('vfat.img'))).to.throw(NotThisFormat, /offset 1080/);
    expect(() => checkExt3Header(Buffer.alloc(600))).to.throw(NotThisFormat, /too short/);
  });
});
