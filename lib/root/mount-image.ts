// mountImage(): one partition of an image at a target, by the driver this host and policy
// allow (see drivers/select.ts), with the image defaults: read-only unless asked and
// possible, nosuid, nodev.

import * as path from 'node:path';
import { ImgmountError } from '../errors';
import { checkpoint } from '../util/checkpoint';
import { EXT3, SANDBOX, SQUASHFS } from '../image/constants';
import type { Image } from '../image/image';
import type { Section } from '../image/section';
import { KernelDriver, KernelMounted, alreadyGoneIsFine, kernelMountFunc, plainKernelMount } from '../drivers/kernel';
import { chooseDriver, type DriverChoice, type DriverPolicy } from '../drivers/select';
import type { DriverMountParams, DriverName, MountedFilesystem } from '../drivers/types';
import { currentMountNamespace, entryProcess, removeMountRecord, saveMountRecord, thisOwner, type MountRecord } from '../drivers/mount-record';
import { bindMount } from '../mount/bind';
import { MS_NODEV, MS_NOSUID, MS_RDONLY } from '../mount/flags';
import { unmountInNamespace } from '../mount/in-namespace';
import { mountNamespaceInode, type NamespaceRef, type NamespaceTarget } from '../ns/namespace';
import { PinnedDir, pinTarget } from '../path/pinned';
import { PinDeclined, type InHopTarget, type OverlayAbove } from '../mount/partition';

export interface MountImageOptions extends DriverPolicy {
  /** The partition to mount (default: the root filesystem partition). */
  partition?: Section;
  /** Mount read-write: needs an ext3 partition (or a sandbox) of an image opened writable. */
  writable?: boolean;
  /**
   * Read-only mounts by the kernel driver reuse a loop device already bound to the same image
   * file, offset and size (Apptainer's "shared loop devices"): hundreds of roots of one image
   * hold one device instead of one each. Writable mounts never share.
   */
  shareLoopDevice?: boolean;
  /** Allow setuid binaries inside (default false: nosuid). Device files are never honoured. */
  allowSetuid?: boolean;
  /** Mount into this mount namespace (a container's). */
  namespace?: NamespaceTarget;
  /** ID-map the mount through this user namespace (kernel driver). */
  idmap?: NamespaceRef;
  /** Run FUSE helpers in this user namespace. */
  userns?: NamespaceRef;
  /** Key for gocryptfs partitions. */
  key?: Buffer | string;
  /** How long a FUSE helper may take to serve its mount (default 10 s). */
  timeoutMs?: number;
  /**
   * The mount is meant to outlive this process (the CLI's `imgmount mount`): its record names no
   * owner, so cleanup() leaves it unless told `all`.
   */
  persist?: boolean;
  /** FUSE helpers get SIGTERM when this process dies (see FuseDriverOptions.dieWithOwner). */
  dieWithOwner?: boolean;
  /**
   * @internal Who keeps the mount record: this call ('own', the default), a caller that wrote
   * one for the same target already ('merge': root()'s top mount), or nobody ('none': a layer
   * root()'s record describes).
   */
  recordAs?: 'own' | 'merge' | 'none';
  /** @internal With recordAs 'merge': the caller's record object, which a FUSE mount merges into without reading it back. */
  mergeInto?: MountRecord;
  /** @internal The driver, chosen already by the caller (root() chooses while it pins and records). */
  driverChoice?: DriverChoice;
  signal?: AbortSignal;
}

/** Filesystem types a mount of `partition` may show, so that cleanup() unmounts only that at the target. */
export function expectedFstypes(partition: Section, overlay = false): string[] | undefined {
  if (overlay) return ['overlay', 'fuse.fuse-overlayfs'];
  if (partition.type === SQUASHFS) return ['squashfs', 'fuse.squashfuse_ll', 'fuse.squashfuse'];
  if (partition.type === EXT3) return ['ext3', 'ext4', 'fuse.fuse2fs', 'fuse'];
  return undefined; // a sandbox bind shows the type of whatever holds the directory
}

/** A mount whose record this call wrote: removed once the mount is released. */
class Recorded implements MountedFilesystem {
  constructor(
    private readonly inner: MountedFilesystem,
    private readonly record: { target: string; mntns: string },
  ) {}
  get target(): string {
    return this.inner.target;
  }
  get driver(): MountedFilesystem['driver'] {
    return this.inner.driver;
  }
  get fstype(): string {
    return this.inner.fstype;
  }
  get readOnly(): boolean {
    return this.inner.readOnly;
  }
  get loopDevice(): string | null {
    return this.inner.loopDevice;
  }
  get helpers(): MountedFilesystem['helpers'] {
    return this.inner.helpers;
  }
  get closed(): boolean {
    return this.inner.closed;
  }
  async close(): Promise<void> {
    await this.inner.close();
    await removeMountRecord(this.record.target, this.record.mntns);
  }
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

/** Whether `partition` can be mounted read-write, and if not, why. */
export function writableProblem(image: Image, partition: Section): string | undefined {
  if (partition.type === SQUASHFS) return `${image.path}: squashfs is a read-only filesystem`;
  if (partition.type !== EXT3 && partition.type !== SANDBOX) return `${image.path}: partition "${partition.name}" cannot be written`;
  if (!image.writable) return `${image.path} was opened read-only; open it with init(path, true) to write`;
  return undefined;
}

/**
 * Mounts one partition of `image` at `target`: a path (pinned here; a system directory is
 * ERR_UNSAFE_TARGET), a PinnedDir (taken over by the returned handle), or with `namespace` a
 * path inside that namespace.
 */
export async function mountImage(image: Image, target: string | PinnedDir, options: MountImageOptions = {}): Promise<MountedFilesystem> {
  image.assertOpen();
  const signal = options.signal;
  checkpoint('mountImage:start', signal);
  const partition = options.partition ?? image.getRootFsPartition();
  const writable = options.writable ?? false;
  if (writable) {
    const problem = writableProblem(image, partition);
    if (problem) throw new ImgmountError(partition.type === SQUASHFS ? 'ERR_READ_ONLY_FS' : 'ERR_IMAGE_NOT_WRITABLE', `could not mount ${problem}`, { path: image.path });
  }
  if (options.namespace && target instanceof PinnedDir) throw new TypeError('mountImage: a target in another namespace is a path there, not a PinnedDir');
  // The driver choice (an fstat of the image) and the pin (opening the target) are independent:
  // they run at once, so the caller waits for one hop, not two.
  const pinning = options.namespace || target instanceof PinnedDir ? undefined : pinTarget(target);
  const [chosen, pinnedNow] = await Promise.allSettled([options.driverChoice ?? chooseDriver(image, partition, options), pinning]);
  if (chosen.status === 'rejected' || pinnedNow.status === 'rejected') {
    if (pinnedNow.status === 'fulfilled') await pinnedNow.value?.close();
    throw chosen.status === 'rejected' ? chosen.reason : (pinnedNow as PromiseRejectedResult).reason;
  }
  const choice = chosen.value;
  const pinned = options.namespace ? undefined : target instanceof PinnedDir ? target : pinnedNow.value!;
  const where = options.namespace ? path.resolve(target as string) : pinned!.path;
  let record: MountRecord | undefined;
  try {
    checkpoint('mountImage:driver', signal);
    checkpoint('mountImage:pinned', signal);
    // Intent first (see root()): the record exists before the mount does.
    if ((options.recordAs ?? 'own') === 'own') record = await intendMount(where, partition, choice.driver, options);
    checkpoint('mountImage:recorded', signal);
    const mounted = await mountWith(image, partition, choice, pinned, where, { ...options, recordAs: record ? 'merge' : options.recordAs ?? 'own', ...(record ? { mergeInto: record } : {}) }, writable);
    const m = record ? new Recorded(mounted, record) : mounted;
    try {
      checkpoint('mountImage:mounted', signal);
    } catch (err) {
      await m.close();
      throw err;
    }
    return m;
  } catch (err) {
    if (pinned && !(target instanceof PinnedDir)) await pinned.close();
    if (record) await removeMountRecord(record.target, record.mntns).catch(() => undefined);
    throw err;
  }
}

/**
 * @internal root()'s one-hop mount: a partition the kernel driver (chosen already, in
 * `driverChoice`) mounts through a loop device on a target its own native call opens, recorded
 * by the caller (the intent rides in `target`). PinDeclined, with nothing done, for anything
 * else: the caller then pins the target and mounts with mountImage().
 */
export async function mountImageInHop(image: Image, target: InHopTarget, options: MountImageOptions, overlayAbove?: OverlayAbove): Promise<MountedFilesystem> {
  image.assertOpen();
  const partition = options.partition ?? image.getRootFsPartition();
  const writable = options.writable ?? false;
  const choice = options.driverChoice;
  if (!choice || choice.driver !== 'kernel' || (choice.filesystem !== 'squashfs' && choice.filesystem !== 'ext3') || options.namespace || (options.recordAs ?? 'own') === 'own')
    throw new PinDeclined('not a kernel mount of a partition recorded by its caller');
  if (writable && writableProblem(image, partition)) throw new PinDeclined('not writable as asked: mountImage() says why');
  return mountWith(image, partition, choice, undefined, target.pin.path, options, writable, target, overlayAbove);
}

async function intendMount(target: string, partition: Section, driver: DriverName, options: MountImageOptions): Promise<MountRecord> {
  const ns = options.namespace;
  const own = await currentMountNamespace();
  const expect = expectedFstypes(partition);
  const enter = ns ? await entryProcess(ns) : undefined;
  const record = {
    target,
    mntns: ns ? await mountNamespaceInode(ns) : own,
    driver,
    fstype: expect?.[0] ?? 'unknown',
    helpers: [],
    internalMounts: [],
    ...(ns ? { internalMntns: own } : {}),
    ...(enter ? { enter } : {}),
    ...(options.persist ? {} : { owner: await thisOwner() }),
    ...(expect ? { expectFstype: expect.join(',') } : {}),
    created: new Date().toISOString(),
  } as MountRecord;
  // Exclusive: a target another mount holds (a record there) is ERR_TARGET_IN_USE, nothing made.
  await saveMountRecord(record, { exclusive: true });
  return record;
}

async function mountWith(
  image: Image,
  partition: Section,
  choice: DriverChoice,
  pinned: PinnedDir | undefined,
  target: string,
  options: MountImageOptions,
  writable: boolean,
  inHop?: InHopTarget,
  overlayAbove?: OverlayAbove,
): Promise<MountedFilesystem> {
  if (choice.filesystem === 'sandbox') {
    // The image's own fd (/proc/self/fd/N) is cloned: the directory detection looked at.
    await bindMount(image.source, pinned ?? target, {
      readOnly: !writable,
      nosuid: !options.allowSetuid,
      ...(options.namespace ? { namespace: options.namespace } : {}),
      ...(options.signal ? { signal: options.signal } : {}),
    });
    if (options.namespace) {
      const ns = options.namespace;
      return new KernelMounted(target, 'bind', !writable, null, () => alreadyGoneIsFine(unmountInNamespace(ns, target)));
    }
    return plainKernelMount(pinned!, 'bind', !writable);
  }
  const params: DriverMountParams = {
    source: image.source,
    sourcePath: image.path,
    target,
    ...(pinned ? { pinned } : {}),
    ...(inHop ? { inHop } : {}),
    ...(overlayAbove ? { overlayAbove } : {}),
    filesystem: choice.filesystem,
    flags: MS_NODEV | (options.allowSetuid ? 0 : MS_NOSUID) | (writable ? 0 : MS_RDONLY),
    offset: partition.offset,
    size: partition.size,
    fsOptions: [],
    ...(options.key !== undefined ? { key: Buffer.from(options.key) } : {}),
    ...(options.namespace ? { namespace: options.namespace } : {}),
    ...(options.idmap !== undefined ? { idmap: options.idmap } : {}),
    ...(options.timeoutMs !== undefined ? { timeoutMs: options.timeoutMs } : {}),
    ...(options.signal ? { signal: options.signal } : {}),
    ...(options.recordAs === 'merge' ? { recordMerge: true, ...(options.mergeInto ? { mergeInto: options.mergeInto } : {}) } : {}),
    ...(options.shareLoopDevice && !writable ? { shareLoopDevice: true } : {}),
  };
  // The FUSE driver is loaded only when a mount needs it.
  const driver =
    choice.driver === 'kernel'
      ? new KernelDriver()
      : new (await import('../drivers/fuse/driver')).FuseDriver({ ...(options.persist ? { persist: true } : {}), ...(options.dieWithOwner ? { dieWithOwner: true } : {}) });
  await driver.start({ sessionPath: '', usernsFd: -1, fuseFd: -1, ...(options.userns !== undefined ? { config: { userns: options.userns } } : {}) });
  return driver.mount(params, kernelMountFunc);
}
