// mountImage(): one partition of an image at a target, by the driver this host and policy
// allow (see drivers/select.ts), with the image defaults: read-only unless asked and
// possible, nosuid, nodev.

import * as path from 'node:path';
import { ImgmountError, throwIfAborted } from '../errors';
import { EXT3, SANDBOX, SQUASHFS } from '../image/constants';
import type { Image } from '../image/image';
import type { Section } from '../image/section';
import { KernelDriver, KernelMounted, alreadyGoneIsFine, kernelMountFunc, plainKernelMount } from '../drivers/kernel';
import { chooseDriver, type DriverPolicy } from '../drivers/select';
import type { DriverMountParams, MountedFilesystem } from '../drivers/types';
import { bindMount } from '../mount/bind';
import { MS_NODEV, MS_NOSUID, MS_RDONLY } from '../mount/flags';
import { unmountInNamespace } from '../ns/mount';
import type { NamespaceRef, NamespaceTarget } from '../ns/namespace';
import { PinnedDir, pinTarget } from '../path/pinned';

export interface MountImageOptions extends DriverPolicy {
  /** The partition to mount (default: the root filesystem partition). */
  partition?: Section;
  /** Mount read-write: needs an ext3 partition (or a sandbox) of an image opened writable. */
  writable?: boolean;
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
  /** Keep FUSE helpers running after this process exits (the CLI's `imgmount mount`). */
  persist?: boolean;
  signal?: AbortSignal;
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
  throwIfAborted(options.signal);
  const partition = options.partition ?? image.getRootFsPartition();
  const writable = options.writable ?? false;
  if (writable) {
    const problem = writableProblem(image, partition);
    if (problem) throw new ImgmountError(partition.type === SQUASHFS ? 'ERR_READ_ONLY_FS' : 'ERR_IMAGE_NOT_WRITABLE', `could not mount ${problem}`, { path: image.path });
  }
  if (options.namespace && target instanceof PinnedDir) throw new TypeError('mountImage: a target in another namespace is a path there, not a PinnedDir');
  const choice = await chooseDriver(image, partition, options);
  const pinned = options.namespace ? undefined : target instanceof PinnedDir ? target : await pinTarget(target);
  try {
    return await mountWith(image, partition, choice, pinned, options.namespace ? path.resolve(target as string) : pinned!.path, options, writable);
  } catch (err) {
    if (pinned && !(target instanceof PinnedDir)) await pinned.close();
    throw err;
  }
}

async function mountWith(
  image: Image,
  partition: Section,
  choice: Awaited<ReturnType<typeof chooseDriver>>,
  pinned: PinnedDir | undefined,
  target: string,
  options: MountImageOptions,
  writable: boolean,
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
    target,
    ...(pinned ? { pinned } : {}),
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
  };
  // The FUSE driver is loaded only when a mount needs it.
  const driver = choice.driver === 'kernel' ? new KernelDriver() : new (await import('../drivers/fuse/driver')).FuseDriver(options.persist ? { persist: true } : {});
  await driver.start({ sessionPath: '', usernsFd: -1, fuseFd: -1, ...(options.userns !== undefined ? { config: { userns: options.userns } } : {}) });
  return driver.mount(params, kernelMountFunc);
}
