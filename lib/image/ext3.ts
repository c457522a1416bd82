// ext3 superblock checks.
//
// Apptainer mounts image partitions with fstype ext3, which the kernel serves with the
// ext4 driver restricted to ext3 features. So: the journal must be there (ext2 is refused)
// and no incompat/ro_compat feature outside the ext3 set may be on. Unlike Apptainer we
// name the offending features and check that the filesystem fits in the space it has.

import { ImgmountError } from '../errors';
import { parseLaunchHeader } from './launch-header';
import { NotThisFormat } from './probe';

const SUPERBLOCK_OFFSET = 1024;
/** Bytes of the superblock we decode (through s_feature_ro_compat and the 64-bit count). */
const SUPERBLOCK_NEEDED = 0x154;
const EXT_MAGIC = 0xef53;

const COMPAT_HAS_JOURNAL = 0x4;
const INCOMPAT_64BIT = 0x80;
/** incompat bits an ext3 image may carry: filetype, recover, meta_bg. */
const EXT3_INCOMPAT = 0x2 | 0x4 | 0x10;
/** ro_compat bits an ext3 image may carry: sparse_super, large_file, btree_dir. */
const EXT3_RO_COMPAT = 0x1 | 0x2 | 0x4;

const incompatNames: Record<number, string> = {
  0x1: 'compression',
  0x2: 'filetype',
  0x4: 'needs_recovery',
  0x8: 'journal_dev',
  0x10: 'meta_bg',
  0x40: 'extent',
  0x80: '64bit',
  0x100: 'mmp',
  0x200: 'flex_bg',
  0x400: 'ea_inode',
  0x1000: 'dirdata',
  0x2000: 'metadata_csum_seed',
  0x4000: 'large_dir',
  0x8000: 'inline_data',
  0x10000: 'encrypt',
  0x20000: 'casefold',
};

const roCompatNames: Record<number, string> = {
  0x1: 'sparse_super',
  0x2: 'large_file',
  0x4: 'btree_dir',
  0x8: 'huge_file',
  0x10: 'uninit_bg',
  0x20: 'dir_nlink',
  0x40: 'extra_isize',
  0x100: 'quota',
  0x200: 'bigalloc',
  0x400: 'metadata_csum',
  0x1000: 'readonly',
  0x2000: 'project',
  0x4000: 'shared_blocks',
  0x8000: 'verity',
  0x10000: 'orphan_present',
};

export interface Ext3Info {
  /** Offset of the filesystem from the start of the buffer's file (launch header length). */
  offset: number;
  blockSize: number;
  blocksCount: number;
  /** Bytes the filesystem spans (blocks × block size). */
  fsSize: number;
  compat: number;
  incompat: number;
  roCompat: number;
  label: string;
  uuid: string;
}

export interface Ext3CheckOptions {
  /** Bytes in the file or partition `buf` starts; the filesystem must fit in what follows the header. */
  size?: number;
  /** Skip a launch header first (bare files); SIF partitions start at 0. */
  launchHeader?: boolean;
  /**
   * Accept ext2/ext4 feature sets (a FUSE reader such as fuse2fs handles them).
   * Default false: the kernel `ext3` type refuses them.
   */
  anyExtFeatures?: boolean;
}

function featureNames(bits: number, names: Record<number, string>): string[] {
  const out: string[] = [];
  for (let bit = 1; bit !== 0 && bit <= 0x80000000; bit = bit * 2) {
    if (bits & bit) out.push(names[bit] ?? `0x${bit.toString(16)}`);
    if (bit === 0x80000000) break;
  }
  return out;
}

/**
 * Checks an ext superblock in `buf` (the start of a file or partition, at least 2 KiB for a
 * full check). Throws NotThisFormat when there is no ext magic, ImgmountError when it is an
 * ext filesystem that the ext3 path cannot use.
 */
export function checkExt3Header(buf: Buffer, options: Ext3CheckOptions = {}): Ext3Info {
  let offset = 0;
  if (options.launchHeader !== false) {
    const header = parseLaunchHeader(buf);
    if (!header) throw new NotThisFormat('ext3', 'launch header "#!..." has no line end in the first 2048 bytes');
    offset = header.length;
  }
  const sbStart = offset + SUPERBLOCK_OFFSET;
  if (buf.length < sbStart + 0x3a) {
    throw new NotThisFormat(
      'ext3',
      `too short for an ext superblock (magic at offset ${sbStart + 0x38}, only ${buf.length} bytes)`,
    );
  }
  if (buf.readUInt16LE(sbStart + 0x38) !== EXT_MAGIC) {
    throw new NotThisFormat('ext3', `no ext superblock magic 0xEF53 at offset ${sbStart + 0x38}`);
  }
  if (buf.length < sbStart + SUPERBLOCK_NEEDED) {
    throw new ImgmountError('ERR_EXT3_INVALID', `ext superblock truncated: ${buf.length - sbStart} bytes present`);
  }
  const sb = buf.subarray(sbStart, sbStart + SUPERBLOCK_NEEDED);
  const compat = sb.readUInt32LE(0x5c);
  const incompat = sb.readUInt32LE(0x60);
  const roCompat = sb.readUInt32LE(0x64);
  const logBlockSize = sb.readUInt32LE(0x18);
  if (logBlockSize > 6) {
    throw new ImgmountError('ERR_EXT3_INVALID', `corrupted ext superblock: block size 1024 << ${logBlockSize}`);
  }
  const blockSize = 1024 * 2 ** logBlockSize;
  let blocksCount = sb.readUInt32LE(0x4);
  if (incompat & INCOMPAT_64BIT) blocksCount += sb.readUInt32LE(0x150) * 2 ** 32;
  const fsSize = blocksCount * blockSize;

  if (!options.anyExtFeatures) {
    if (!(compat & COMPAT_HAS_JOURNAL)) {
      throw new ImgmountError(
        'ERR_EXT3_UNSUPPORTED_FEATURES',
        'file is not a valid ext3 image: this is an ext2 filesystem (no journal); add one with `tune2fs -j` or recreate it with mkfs.ext3',
        { details: { missing: ['has_journal'] } },
      );
    }
    const badIncompat = featureNames(incompat & ~EXT3_INCOMPAT, incompatNames);
    const badRoCompat = featureNames(roCompat & ~EXT3_RO_COMPAT, roCompatNames);
    const bad = [...badIncompat, ...badRoCompat];
    if (bad.length > 0) {
      throw new ImgmountError(
        'ERR_EXT3_UNSUPPORTED_FEATURES',
        `file is not a valid ext3 image: ext4 feature${bad.length > 1 ? 's' : ''} ${bad.join(', ')} not supported; recreate it with mkfs.ext3`,
        { details: { features: bad } },
      );
    }
  }
  // A 64-bit count can put the size beyond 2^53, where numbers are no longer exact (and no file is that large).
  if (!Number.isSafeInteger(fsSize)) {
    const exact = BigInt(sb.readUInt32LE(0x4)) + (incompat & INCOMPAT_64BIT ? BigInt(sb.readUInt32LE(0x150)) << 32n : 0n);
    throw new ImgmountError('ERR_EXT3_INVALID', `corrupted ext superblock: ${exact} blocks of ${blockSize} bytes is beyond 2^53 bytes`, {
      details: { blocksCount: exact.toString(), blockSize },
    });
  }
  const available = options.size === undefined ? undefined : options.size - offset;
  if (available !== undefined && fsSize > available) {
    throw new ImgmountError(
      'ERR_EXT3_INVALID',
      `ext filesystem spans ${fsSize} bytes (${blocksCount} blocks of ${blockSize}) but only ${available} are present (truncated image?)`,
      { details: { fsSize, available } },
    );
  }
  const label = sb.subarray(0x78, 0x88).toString('latin1').replace(/\0.*$/s, '');
  const u = sb.subarray(0x68, 0x78).toString('hex');
  const uuid = `${u.slice(0, 8)}-${u.slice(8, 12)}-${u.slice(12, 16)}-${u.slice(16, 20)}-${u.slice(20)}`;
  return { offset, blockSize, blocksCount, fsSize, compat, incompat, roCompat, label, uuid };
}
