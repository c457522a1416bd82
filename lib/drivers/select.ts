// Which driver mounts a partition: the kernel when this process may mount and the kernel
// reads the filesystem and its compression, FUSE otherwise; an operator policy can keep
// untrusted images away from the kernel's filesystem code (Apptainer's `allow setuid-mount
// squashfs|extfs = no`). When nothing here can read a partition, the error says what it is
// and what would read it.

import { ImgmountError } from '../errors';
import { ENCRYPTSQUASHFS, EXT3, GOCRYPTFSSQUASHFS, RAW, SANDBOX, SQUASHFS, typeName } from '../image/constants';
import type { Image } from '../image/image';
import { readPartitionInfo } from '../image/partition-info';
import type { Section } from '../image/section';
import { capabilities } from '../mount/capabilities';
import { encryptionUnsupported } from './kernel';
import { kernelSquashfsCompressions } from './kernel-support';
import type { DriverName } from './types';

export type DriverMode = 'auto' | DriverName;

export interface DriverPolicy {
  /** 'auto' (default) picks per partition; 'kernel' or 'fuse' insist (and fail saying why not). */
  driver?: DriverMode;
  /** false: never let the kernel parse squashfs images (FUSE only). Default true. */
  allowKernelSquashfs?: boolean;
  /** false: never let the kernel parse ext3 images (FUSE only). Default true. */
  allowKernelExtfs?: boolean;
  /** Whether this process may mount (default: effective uid 0). */
  privileged?: boolean;
  /** Whether unprivileged users may use /dev/fuse here (default: from its permissions). */
  fuseUnprivileged?: boolean;
  /** Squashfs compressions the kernel reads (default: from its configuration). */
  kernelSquashfsCompressions?: string[];
  /** Squashfs compressions squashfuse reads (default: Debian's 0.1.105 set). */
  fuseSquashfsCompressions?: string[];
}

/** squashfuse 0.1.105: "this version supports only lzo, xz, zlib, lz4, zstd". */
export const SQUASHFUSE_COMPRESSIONS = ['gzip', 'lzo', 'xz', 'lz4', 'zstd'];

export interface DriverChoice {
  driver: DriverName;
  /** The filesystem to ask the driver for (squashfs, ext3, gocryptfs; sandbox is a bind). */
  filesystem: string;
  /** Why this driver, for logs and `imgmount mount` output. */
  reason: string;
}

interface Ability {
  ok: boolean;
  why: string;
}

const notNeeded: Ability = { ok: false, why: 'not considered (the kernel driver was chosen)' };

/** Chooses the driver for `partition` of `image` under `policy`. */
export async function chooseDriver(image: Image, partition: Section, policy: DriverPolicy = {}): Promise<DriverChoice> {
  const mode = policy.driver ?? 'auto';
  const privileged = policy.privileged ?? process.geteuid?.() === 0;
  if (partition.type === SANDBOX) return { driver: 'kernel', filesystem: 'sandbox', reason: 'sandbox directories are bind-mounted' };
  if (partition.type === RAW) {
    throw new ImgmountError('ERR_MOUNT_UNSUPPORTED_FS', `partition "${partition.name}" (id ${partition.id}) of ${image.path} is raw data, not a filesystem`);
  }
  if (partition.type === ENCRYPTSQUASHFS) throw encryptionUnsupported(image.path);
  const caps = await capabilities();
  // FUSE programs are looked up only when the kernel cannot (or may not) do it.
  const bins = async () => (await import('./fuse/binaries')).fuseBinaries();
  const fuseOk = (program: string | null, what: string): Ability => {
    if (!caps.fuse.available) return { ok: false, why: 'the kernel has no FUSE (/dev/fuse missing)' };
    if (!program) return { ok: false, why: `${what} is not installed` };
    if (!privileged && !(policy.fuseUnprivileged ?? caps.fuse.unprivileged)) return { ok: false, why: '/dev/fuse is not open to unprivileged users here' };
    return { ok: true, why: `${program} (FUSE)` };
  };

  let filesystem: string;
  let kernel: Ability;
  let fuse: Ability;
  if (partition.type === GOCRYPTFSSQUASHFS) {
    filesystem = 'gocryptfs';
    kernel = { ok: false, why: 'gocryptfs is a FUSE filesystem' };
    const b = await bins();
    fuse = fuseOk(b.gocryptfs && b.squashfuse ? b.gocryptfs : null, b.gocryptfs ? 'squashfuse' : 'gocryptfs');
  } else if (partition.type === SQUASHFS) {
    filesystem = 'squashfs';
    const info = (await readPartitionInfo(image, partition)).squashfs!;
    const comp = info.compression;
    const kernelComps = policy.kernelSquashfsCompressions ?? (await kernelSquashfsCompressions()).compressions;
    const fuseComps = policy.fuseSquashfsCompressions ?? SQUASHFUSE_COMPRESSIONS;
    if (!privileged) kernel = { ok: false, why: 'mounting needs root (CAP_SYS_ADMIN)' };
    else if (policy.allowKernelSquashfs === false) kernel = { ok: false, why: 'policy forbids kernel mounts of squashfs images' };
    else if (!caps.filesystems.includes('squashfs')) kernel = { ok: false, why: 'the kernel has no squashfs' };
    else if (!kernelComps.includes(comp)) kernel = { ok: false, why: `the kernel's squashfs cannot decompress ${comp} (it reads ${kernelComps.join(', ')})` };
    else if (Math.floor(partition.size / 512) * 512 < info.bytesUsed) {
      // A loop device is sized in whole 512-byte sectors: a filesystem ending in a partial
      // sector (mksquashfs -nopad) loses its tail there.
      kernel = { ok: false, why: `the filesystem ends in a partial sector (${info.bytesUsed} bytes used) and a loop device shows whole 512-byte sectors only` };
    }
    else kernel = { ok: true, why: `the kernel reads ${comp} squashfs` };
    fuse = mode === 'kernel' || (mode === 'auto' && kernel.ok) ? notNeeded : fuseOk((await bins()).squashfuse, 'squashfuse');
    if (fuse.ok && !fuseComps.includes(comp)) fuse = { ok: false, why: `squashfuse cannot decompress ${comp} (it reads ${fuseComps.join(', ')})` };
    if (mode === 'auto' && !kernel.ok && !fuse.ok && comp === 'lzma') {
      throw new ImgmountError(
        'ERR_MOUNT_UNSUPPORTED_COMPRESSION',
        `partition "${partition.name}" of ${image.path} is squashfs compressed with legacy lzma, which nothing here reads: ` +
          `${kernel.why}; ${fuse.why}. A squashfuse built with liblzma reads it, or convert it: unsquashfs, then mksquashfs -comp xz`,
        { details: { compression: comp } },
      );
    }
  } else if (partition.type === EXT3) {
    filesystem = 'ext3';
    if (!privileged) kernel = { ok: false, why: 'mounting needs root (CAP_SYS_ADMIN)' };
    else if (policy.allowKernelExtfs === false) kernel = { ok: false, why: 'policy forbids kernel mounts of ext3 images' };
    else if (!caps.filesystems.includes('ext3') && !caps.filesystems.includes('ext4')) kernel = { ok: false, why: 'the kernel has no ext3/ext4' };
    else kernel = { ok: true, why: 'the kernel reads ext3' };
    fuse = mode === 'kernel' || (mode === 'auto' && kernel.ok) ? notNeeded : fuseOk((await bins()).fuse2fs, 'fuse2fs');
  } else {
    throw new ImgmountError('ERR_MOUNT_UNSUPPORTED_FS', `cannot mount a partition of type ${typeName(partition.type)}`);
  }

  const pick = (driver: DriverName, a: Ability): DriverChoice => ({ driver, filesystem, reason: a.why });
  if (mode === 'kernel') {
    if (kernel.ok) return pick('kernel', kernel);
    throw noDriver(image, partition, filesystem, 'kernel', kernel.why);
  }
  if (mode === 'fuse') {
    if (fuse.ok) return pick('fuse', fuse);
    throw noDriver(image, partition, filesystem, 'fuse', fuse.why);
  }
  if (kernel.ok) return pick('kernel', kernel);
  if (fuse.ok) return pick('fuse', { ok: true, why: `${fuse.why}, since ${kernel.why}` });
  throw noDriver(image, partition, filesystem, 'any', `kernel: ${kernel.why}; FUSE: ${fuse.why}`);
}

function noDriver(image: Image, partition: Section, fs: string, which: string, why: string): ImgmountError {
  return new ImgmountError(
    'ERR_NO_DRIVER',
    `no ${which === 'any' ? '' : which + ' '}driver can mount ${fs} partition "${partition.name}" of ${image.path}: ${why}`,
    { path: image.path, details: { partition: partition.name, filesystem: fs } },
  );
}

