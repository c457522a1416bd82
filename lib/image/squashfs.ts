// squashfs superblock checks (bare images, images behind a launch header, SIF partitions).
//
// Beyond Apptainer's magic + compression-id check we parse the whole 96-byte v4 superblock:
// major version 4, block_size == 1 << block_log, and bytes_used within the space the image
// has, so a truncated image fails here with a clear error instead of in the kernel.

import { ImgmountError } from '../errors';
import { parseLaunchHeader } from './launch-header';
import { NotThisFormat } from './probe';

export const SQUASHFS_SUPERBLOCK_SIZE = 96;
const MAGIC_LE = 0x73717368; // "hsqs"
const MAGIC_BE = 0x68737173; // "sqsh": big-endian (pre-4.0) images

/** Compression ids of the squashfs v4 superblock. */
export const squashfsCompressions: Record<number, string> = {
  1: 'gzip',
  2: 'lzma',
  3: 'lzo',
  4: 'xz',
  5: 'lz4',
  6: 'zstd',
};

export interface SquashfsInfo {
  /** Offset of the superblock from the start of the buffer's file (launch header length). */
  offset: number;
  compression: string;
  compressionId: number;
  major: number;
  minor: number;
  blockSize: number;
  bytesUsed: number;
  inodes: number;
  mkfsTime: number;
  flags: number;
}

export interface SquashfsCheckOptions {
  /** Bytes in the file or partition `buf` starts; the filesystem must fit in what follows the header. */
  size?: number;
  /** Skip a launch header first (bare files); SIF partitions start at 0. */
  launchHeader?: boolean;
}

/**
 * Checks a squashfs superblock in `buf` (the start of a file or partition). Returns what
 * it found; throws NotThisFormat when it is not squashfs at all, ImgmountError when it is
 * squashfs but unusable.
 */
export function checkSquashfsHeader(buf: Buffer, options: SquashfsCheckOptions = {}): SquashfsInfo {
  let offset = 0;
  if (options.launchHeader !== false) {
    const header = parseLaunchHeader(buf);
    if (!header) throw new NotThisFormat('squashfs', 'launch header "#!..." has no line end in the first 2048 bytes');
    offset = header.length;
  }
  if (buf.length < offset + 4) {
    throw new NotThisFormat('squashfs', `too short for a squashfs superblock (${buf.length - offset} bytes after offset ${offset})`);
  }
  const magic = buf.readUInt32LE(offset);
  if (magic === MAGIC_BE) {
    throw new ImgmountError(
      'ERR_SQUASHFS_UNSUPPORTED',
      'big-endian squashfs (magic "sqsh", squashfs 3.x or older) is not supported; recreate the image with mksquashfs 4.x',
    );
  }
  if (magic !== MAGIC_LE) {
    throw new NotThisFormat('squashfs', `no "hsqs" magic at offset ${offset}`);
  }
  if (buf.length < offset + SQUASHFS_SUPERBLOCK_SIZE) {
    throw new ImgmountError(
      'ERR_SQUASHFS_INVALID',
      `squashfs superblock truncated: ${buf.length - offset} of ${SQUASHFS_SUPERBLOCK_SIZE} bytes present`,
    );
  }
  const sb = buf.subarray(offset, offset + SQUASHFS_SUPERBLOCK_SIZE);
  const major = sb.readUInt16LE(28);
  const minor = sb.readUInt16LE(30);
  if (major !== 4) {
    throw new ImgmountError(
      'ERR_SQUASHFS_UNSUPPORTED',
      `squashfs version ${major}.${minor} is not supported (need 4.0); recreate the image with mksquashfs 4.x`,
      { details: { major, minor } },
    );
  }
  const compressionId = sb.readUInt16LE(20);
  const compression = squashfsCompressions[compressionId];
  if (!compression) {
    throw new ImgmountError(
      'ERR_SQUASHFS_INVALID',
      `corrupted image: unknown compression algorithm value ${compressionId}`,
      { details: { compressionId } },
    );
  }
  const blockSize = sb.readUInt32LE(12);
  const blockLog = sb.readUInt16LE(22);
  if (blockLog < 12 || blockLog > 20 || blockSize !== 2 ** blockLog) {
    throw new ImgmountError(
      'ERR_SQUASHFS_INVALID',
      `corrupted image: squashfs block size ${blockSize} does not match block log ${blockLog}`,
    );
  }
  const bytesUsedRaw = sb.readBigUInt64LE(40);
  // Beyond 2^53 a number is no longer exact (and no file is that large): corrupt, whatever the size.
  if (bytesUsedRaw >= 2n ** 53n) {
    throw new ImgmountError('ERR_SQUASHFS_INVALID', `corrupted image: squashfs bytes_used ${bytesUsedRaw} is beyond 2^53 bytes`, {
      details: { bytesUsed: bytesUsedRaw.toString() },
    });
  }
  const bytesUsed = Number(bytesUsedRaw);
  const available = options.size === undefined ? undefined : options.size - offset;
  if (available !== undefined && bytesUsed > available) {
    throw new ImgmountError(
      'ERR_SQUASHFS_INVALID',
      `squashfs filesystem needs ${bytesUsed} bytes but only ${available} are present (truncated image?)`,
      { details: { bytesUsed, available } },
    );
  }
  return {
    offset,
    compression,
    compressionId,
    major,
    minor,
    blockSize,
    bytesUsed,
    inodes: sb.readUInt32LE(4),
    mkfsTime: sb.readUInt32LE(8),
    flags: sb.readUInt16LE(24),
  };
}

/** Compression name of the squashfs in `buf` ("gzip", "xz", "zstd", ...). Errors as checkSquashfsHeader. */
export function getSquashfsComp(buf: Buffer): string {
  return checkSquashfsHeader(buf).compression;
}
