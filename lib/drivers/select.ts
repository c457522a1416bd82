// Which driver mounts a partition: the kernel when this process may mount, the kernel reads
// the filesystem and its compression, and the caller trusts the image enough to let the
// kernel parse it; FUSE otherwise. When nothing here can read a partition, the error says what
// it is and what would read it.
//
// Trust (attack class 7, Apptainer CVE-2023-30549): a crafted ext3 or squashfs image, or one
// whose file a user rewrites while it is mounted, attacks the kernel's filesystem code. The
// default follows Apptainer 1.1.8+/1.3 (`allow setuid-mount extfs = no`, `squashfs = iflimited`):
// ext3 goes through fuse2fs unless the caller trusts the image; squashfs goes through the
// kernel when the caller trusts the image or the image file can be written by nobody but root
// (owner uid 0, no group or other write bit: ACL grants show in the group bits), through
// squashfuse otherwise. `allowKernelSquashfs` / `allowKernelExtfs` override the rule per
// filesystem (false never, true always), and `driver: 'kernel'` is the caller trusting it.

import { ImgmountError } from '../errors';
import { ENCRYPTSQUASHFS, EXT3, GOCRYPTFSSQUASHFS, RAW, SANDBOX, SQUASHFS, typeName } from '../image/constants';
import type { Image } from '../image/image';
import { readPartitionInfo } from '../image/partition-info';
import type { Section } from '../image/section';
import type { ImageFileOwnership } from '../image/open-file';
import type { SquashfsInfo } from '../image/squashfs';
import { fstatFd } from '../io/fd';
import { hostFilesystems, type HostFilesystems } from '../mount/host-filesystems';
import { encryptionUnsupported } from './kernel';
import { kernelSquashfsCompressions } from './kernel-support';
import type { FuseBinaries } from './fuse/binaries';
import type { DriverName } from './types';

export type DriverMode = 'auto' | DriverName;

export interface DriverPolicy {
  /**
   * 'auto' (default) picks per partition; 'kernel' or 'fuse' insist (and fail saying why not).
   * 'kernel' is the caller's decision to trust the image (as `trusted: true`), except where
   * `allowKernelSquashfs`/`allowKernelExtfs` is false.
   */
  driver?: DriverMode;
  /**
   * The caller vouches for this image: the kernel may parse its filesystems. Default false:
   * ext3 goes through fuse2fs, squashfs through the kernel only when the image file can be
   * written by nobody but root (CVE-2023-30549).
   */
  trusted?: boolean;
  /** Kernel squashfs: false never (FUSE only), true always, undefined (default) by the trust rule. */
  allowKernelSquashfs?: boolean;
  /** Kernel ext3: false never (FUSE only), true always, undefined (default) only when trusted. */
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

export interface Ability {
  ok: boolean;
  why: string;
  /** Set when the kernel could but may not: the image is not trusted (the default rule). */
  untrusted?: { cause: string; hint: string };
}

export type { ImageFileOwnership } from '../image/open-file';

/**
 * The trust rule alone: whether policy lets the kernel parse `fs` of an image whose open file
 * has `file`'s owner and mode (before asking whether the kernel can), and why.
 */
export function kernelTrust(fs: 'squashfs' | 'ext3', policy: DriverPolicy, file: ImageFileOwnership): Ability {
  const option = fs === 'squashfs' ? 'allowKernelSquashfs' : 'allowKernelExtfs';
  const allow = policy[option];
  if (allow === false) return { ok: false, why: `policy forbids kernel mounts of ${fs} images (${option}: false)` };
  if (allow === true) return { ok: true, why: `${option}: true` };
  if (policy.trusted === true) return { ok: true, why: 'the caller trusts the image' };
  if (policy.driver === 'kernel') return { ok: true, why: "driver 'kernel' asked: the caller trusts the image" };
  if (fs === 'ext3') {
    return untrusted('the image is not marked trusted', 'pass trusted: true or allowKernelExtfs: true to let the kernel');
  }
  const writers: string[] = [];
  if (file.uid !== 0) writers.push(`uid ${file.uid}`);
  if (file.mode & 0o020) writers.push(`group ${file.gid}`);
  if (file.mode & 0o002) writers.push('everyone');
  if (writers.length === 0) return { ok: true, why: 'the image file is owned by root and writable by no one else' };
  const mode = (file.mode & 0o7777).toString(8).padStart(4, '0');
  return untrusted(`the image file is writable by ${writers.join(' and ')} (owner ${file.uid}, mode ${mode})`, 'pass trusted: true to let the kernel');
}

function untrusted(cause: string, hint: string): Ability {
  return { ok: false, why: `${cause}, so the kernel may not parse it (CVE-2023-30549); ${hint}`, untrusted: { cause, hint } };
}

/**
 * What the decision looks at besides the image, the partition and the policy: facts about this
 * process, the host and the image file, gathered by `chooseDriver` (each only when the decision
 * needs it) or given by a test.
 */
export interface DriverCapabilities {
  /** Whether this process may mount (`policy.privileged`, else effective uid 0). */
  privileged: boolean;
  /** Which filesystems the kernel has, and /dev/fuse. */
  host: { filesystems: string[]; fuse: Pick<HostFilesystems['fuse'], 'available' | 'unprivileged'> };
  /** Owner and mode of the image's open file (fstat of `image.fd`): for squashfs and ext3 when privileged. */
  file?: ImageFileOwnership;
  /** The squashfs superblock's compression and size in use: for squashfs. */
  squashfs?: Pick<SquashfsInfo, 'compression' | 'bytesUsed'>;
  /** Squashfs compressions the kernel reads: for squashfs when the policy names none. */
  kernelSquashfsCompressions?: string[];
  /** The FUSE programs found: whenever FUSE is considered (`fuseConsidered`). */
  fuse?: Pick<FuseBinaries, 'squashfuse' | 'fuse2fs' | 'gocryptfs'>;
}

/** Whether this process may mount and policy lets the kernel parse `fs` of the image. */
function kernelPermission(fs: 'squashfs' | 'ext3', policy: DriverPolicy, caps: DriverCapabilities): Ability {
  if (!caps.privileged) return { ok: false, why: 'mounting needs root (CAP_SYS_ADMIN)' };
  // The open file, not the path: what the loop device is bound to and the helpers read.
  return kernelTrust(fs, policy, need(caps.file, 'file'));
}

const notNeeded: Ability = { ok: false, why: 'not considered (the kernel driver was chosen)' };

/** A fact the decision needs and the caller did not gather: a bug in the caller, not a refusal. */
function need<T>(value: T | undefined, what: keyof DriverCapabilities): T {
  if (value === undefined) throw new Error(`chooseDriver: capabilities.${what} is needed for this partition`);
  return value;
}

/** Sandbox directories are bound; raw data and dm-crypt squashfs are nothing any driver mounts. */
function refuseOrBind(image: Pick<Image, 'path'>, partition: Section): DriverChoice | undefined {
  if (partition.type === SANDBOX) return { driver: 'kernel', filesystem: 'sandbox', reason: 'sandbox directories are bind-mounted' };
  if (partition.type === RAW) {
    throw new ImgmountError('ERR_MOUNT_UNSUPPORTED_FS', `partition "${partition.name}" (id ${partition.id}) of ${image.path} is raw data, not a filesystem`);
  }
  if (partition.type === ENCRYPTSQUASHFS) throw encryptionUnsupported(image.path);
  return undefined;
}

/** Whether the kernel can and may mount a squashfs or ext3 partition (before asking FUSE); a gocryptfs one never. */
function kernelAbility(partition: Section, policy: DriverPolicy, caps: DriverCapabilities): Ability {
  const fs = caps.host.filesystems;
  if (partition.type === SQUASHFS) {
    const { compression: comp, bytesUsed } = need(caps.squashfs, 'squashfs');
    const kernelComps = policy.kernelSquashfsCompressions ?? need(caps.kernelSquashfsCompressions, 'kernelSquashfsCompressions');
    const permission = kernelPermission('squashfs', policy, caps);
    if (!permission.ok) return permission;
    if (!fs.includes('squashfs')) return { ok: false, why: 'the kernel has no squashfs' };
    if (!kernelComps.includes(comp)) return { ok: false, why: `the kernel's squashfs cannot decompress ${comp} (it reads ${kernelComps.join(', ')})` };
    if (Math.floor(partition.size / 512) * 512 < bytesUsed) {
      // A loop device is sized in whole 512-byte sectors: a filesystem ending in a partial
      // sector (mksquashfs -nopad) loses its tail there.
      return { ok: false, why: `the filesystem ends in a partial sector (${bytesUsed} bytes used) and a loop device shows whole 512-byte sectors only` };
    }
    return { ok: true, why: `the kernel reads ${comp} squashfs (${permission.why})` };
  }
  if (partition.type === EXT3) {
    const permission = kernelPermission('ext3', policy, caps);
    if (!permission.ok) return permission;
    if (!fs.includes('ext3') && !fs.includes('ext4')) return { ok: false, why: 'the kernel has no ext3/ext4' };
    return { ok: true, why: `the kernel reads ext3 (${permission.why})` };
  }
  return { ok: false, why: 'gocryptfs is a FUSE filesystem' }; // only gocryptfs gets here (see decideDriver)
}

/**
 * Whether the decision looks at FUSE for `partition` (so `capabilities.fuse` is needed): always
 * for gocryptfs; for squashfs and ext3 unless `driver: 'kernel'` insists or, in 'auto', the
 * kernel can and may.
 */
export function fuseConsidered(partition: Section, policy: DriverPolicy, capabilities: DriverCapabilities): boolean {
  if (partition.type === GOCRYPTFSSQUASHFS) return true;
  if (partition.type !== SQUASHFS && partition.type !== EXT3) return false;
  const mode = policy.driver ?? 'auto';
  return !(mode === 'kernel' || (mode === 'auto' && kernelAbility(partition, policy, capabilities).ok));
}

/**
 * The decision alone: the driver for `partition` of `image` under `policy`, given what
 * `capabilities` says about this process, the host and the image file. No I/O; throws the
 * same errors `chooseDriver` does.
 */
export function decideDriver(image: Pick<Image, 'path'>, partition: Section, policy: DriverPolicy, capabilities: DriverCapabilities): DriverChoice {
  const bound = refuseOrBind(image, partition);
  if (bound) return bound;
  const mode = policy.driver ?? 'auto';
  const caps = capabilities;
  const fuseOk = (program: string | null, what: string): Ability => {
    if (!caps.host.fuse.available) return { ok: false, why: 'the kernel has no FUSE (/dev/fuse missing)' };
    if (!program) return { ok: false, why: `${what} is not installed` };
    if (!caps.privileged && !(policy.fuseUnprivileged ?? caps.host.fuse.unprivileged)) return { ok: false, why: '/dev/fuse is not open to unprivileged users here' };
    return { ok: true, why: `${program} (FUSE)` };
  };
  const considered = fuseConsidered(partition, policy, caps);
  const bins = () => need(caps.fuse, 'fuse');

  let filesystem: string;
  let kernel: Ability;
  let fuse: Ability;
  if (partition.type === GOCRYPTFSSQUASHFS) {
    filesystem = 'gocryptfs';
    kernel = kernelAbility(partition, policy, caps);
    const b = bins();
    fuse = fuseOk(b.gocryptfs && b.squashfuse ? b.gocryptfs : null, b.gocryptfs ? 'squashfuse' : 'gocryptfs');
  } else if (partition.type === SQUASHFS) {
    filesystem = 'squashfs';
    const comp = need(caps.squashfs, 'squashfs').compression;
    const fuseComps = policy.fuseSquashfsCompressions ?? SQUASHFUSE_COMPRESSIONS;
    kernel = kernelAbility(partition, policy, caps);
    fuse = considered ? fuseOk(bins().squashfuse, 'squashfuse') : notNeeded;
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
    kernel = kernelAbility(partition, policy, caps);
    fuse = considered ? fuseOk(bins().fuse2fs, 'fuse2fs') : notNeeded;
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
  if (fuse.ok && kernel.untrusted) {
    const { cause, hint } = kernel.untrusted;
    return pick('fuse', { ok: true, why: `${cause}, so ${fuse.why} parses it (CVE-2023-30549); ${hint}` });
  }
  if (fuse.ok) return pick('fuse', { ok: true, why: `${fuse.why}, since ${kernel.why}` });
  throw noDriver(image, partition, filesystem, 'any', `kernel: ${kernel.why}; FUSE: ${fuse.why}`);
}

/**
 * Chooses the driver for `partition` of `image` under `policy`: gathers what `decideDriver`
 * needs (each fact only when the decision looks at it, in this order: the host's filesystems,
 * the squashfs superblock, the kernel's squashfs compressions, an fstat of the image's fd, the
 * FUSE programs) and decides. `known.file`: the fd's owner and mode as the caller knows them,
 * instead of the fstat; only for a caller that checks them again in the hop that mounts
 * (root()'s one-hop mount, which falls back to a fresh choice when they changed).
 */
export async function chooseDriver(image: Image, partition: Section, policy: DriverPolicy = {}, known: { file?: ImageFileOwnership } = {}): Promise<DriverChoice> {
  const privileged = policy.privileged ?? process.geteuid?.() === 0;
  const bound = refuseOrBind(image, partition);
  if (bound) return bound;
  const caps: DriverCapabilities = { privileged, host: await hostFilesystems() };
  if (partition.type === SQUASHFS) {
    caps.squashfs = (await readPartitionInfo(image, partition)).squashfs!;
    if (!policy.kernelSquashfsCompressions) caps.kernelSquashfsCompressions = (await kernelSquashfsCompressions()).compressions;
  }
  // A fresh fstat of the fd, unless the caller has the facts and checks them again where it mounts.
  if ((partition.type === SQUASHFS || partition.type === EXT3) && privileged) caps.file = known.file ?? (await fstatFd(image.fd));
  // FUSE programs are looked up only when the kernel cannot (or may not) do it.
  if (fuseConsidered(partition, policy, caps)) caps.fuse = await (await import('./fuse/binaries')).fuseBinaries();
  return decideDriver(image, partition, policy, caps);
}

function noDriver(image: Pick<Image, 'path'>, partition: Section, fs: string, which: string, why: string): ImgmountError {
  return new ImgmountError(
    'ERR_NO_DRIVER',
    `no ${which === 'any' ? '' : which + ' '}driver can mount ${fs} partition "${partition.name}" of ${image.path}: ${why}`,
    { path: image.path, details: { partition: partition.name, filesystem: fs } },
  );
}

