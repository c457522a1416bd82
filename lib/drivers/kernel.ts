// The kernel driver: a loop device over the image's own fd with the partition's offset and
// size, then a kernel mount through lib/mount (new mount API where the kernel has it).
// Read-only unless asked otherwise, nosuid and nodev always unless the flags say otherwise,
// ext3 with errors=remount-ro. Also mounts overlay (kernel overlayfs) and tmpfs layers.

import * as fs from 'node:fs';
import { ImgmountError, hasErrorCode } from '../errors';
import { Ext3Feature, OverlayFeature, SquashFeature } from '../image/constants';
import type { MountFunc } from '../image/driver';
import { Mount } from '../mount/handle';
import { mount as mountFs, unmountPinnedOnce, umount } from '../mount/mount';
import { mountPartitionImpl } from '../mount/partition';
import { pinTarget, type PinnedDir } from '../path/pinned';
import { MS_NODEV, MS_NOEXEC, MS_NOSUID, MS_RDONLY } from '../mount/flags';
import { mountInNamespace, type NamespaceMount } from '../mount/in-namespace';
import { DriverSession } from './session';
import { RetryableOnce } from '../util/once';
import { loopSourceOf } from './source';
import type { DriverMountParams, MountedFilesystem } from './types';

/** A kernel mount (partition via loop device, or overlay/tmpfs/bind) as a MountedFilesystem. */
export class KernelMounted implements MountedFilesystem {
  readonly driver = 'kernel' as const;
  readonly helpers = [] as const;
  readonly #release = new RetryableOnce();

  constructor(
    readonly target: string,
    readonly fstype: string,
    readonly readOnly: boolean,
    readonly loopDevice: string | null,
    private readonly release: () => Promise<void>,
  ) {}

  /** True once close() is running or has succeeded (a failed close can be retried). */
  get closed(): boolean {
    return this.#release.started;
  }

  close(): Promise<void> {
    return this.#release.run(this.release);
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

/**
 * A kernel mount without a loop device (tmpfs, overlay, bind) that close() unmounts: through
 * its pinned mount point (which it then owns), or by path for our own session directories.
 */
export function plainKernelMount(target: string | PinnedDir, fstype: string, readOnly: boolean): KernelMounted {
  const busy = { busyRetries: UNMOUNT_BUSY_RETRIES };
  if (typeof target === 'string') return new KernelMounted(target, fstype, readOnly, null, () => alreadyGoneIsFine(umount(target, 0, busy)));
  return new KernelMounted(target.path, fstype, readOnly, null, () => alreadyGoneIsFine(unmountPinnedOnce(target, 0, busy)));
}

/**
 * EBUSY retries (with back-off, 0.15-0.3 s in all) when close() unmounts: a process forked
 * meanwhile (a FUSE helper of another mount, any child_process) holds copies of our fds until
 * it execs, and one that pinned this mount makes it busy for that moment. A mount still busy
 * after them (a process working in it) fails with EBUSY, and close() can be called again.
 */
export const UNMOUNT_BUSY_RETRIES = 6;

/** Someone else (`imgmount umount`, an operator) may have unmounted it first: nothing left to do. */
export async function alreadyGoneIsFine(unmount: Promise<void>): Promise<void> {
  try {
    await unmount;
  } catch (err) {
    if (!hasErrorCode(err, 'ERR_NOT_MOUNTED')) throw err;
  }
}

/** /dev/mapper is where dm-crypt devices appear; without device-mapper there is none. */
export function deviceMapperAvailable(): boolean {
  return fs.existsSync('/dev/mapper/control');
}

export function encryptionUnsupported(target: string): ImgmountError {
  return new ImgmountError(
    'ERR_ENCRYPTION_UNSUPPORTED',
    `cannot mount the encrypted (LUKS) squashfs at ${target}: it needs device-mapper (dm-crypt) and root` +
      (deviceMapperAvailable() ? ', and imgmount does not drive cryptsetup yet' : ', and this host has no device-mapper (/dev/mapper/control is missing)'),
  );
}

export class KernelDriver extends DriverSession {
  readonly name = 'kernel' as const;

  features(): number {
    return SquashFeature | Ext3Feature | OverlayFeature;
  }

  protected async doMount(params: DriverMountParams, mountFunc: MountFunc): Promise<MountedFilesystem> {
    const readOnly = (params.flags & MS_RDONLY) !== 0;
    switch (params.filesystem) {
      case 'squashfs':
      case 'ext3':
        return this.#mountPartition(params, readOnly);
      case 'overlay':
      case 'tmpfs':
        return this.#mountVirtual(params, readOnly, mountFunc);
      case 'encryptfs':
        throw encryptionUnsupported(params.target);
      case 'gocryptfs':
        throw new ImgmountError('ERR_DRIVER_UNAVAILABLE', 'the kernel driver cannot mount gocryptfs partitions; use the FUSE driver');
      default:
        throw new ImgmountError('ERR_MOUNT_UNSUPPORTED_FS', `the kernel driver does not mount "${params.filesystem}" partitions`);
    }
  }

  async #mountPartition(params: DriverMountParams, readOnly: boolean): Promise<MountedFilesystem> {
    const ext = params.filesystem === 'ext3';
    const data = [...params.fsOptions];
    if (ext && !data.some((o) => o.startsWith('errors='))) data.push('errors=remount-ro');
    const options = {
      // The kernel's ext3 type cannot be ID-mapped; its ext4 driver reads ext3 images and can.
      fstype: ext && params.idmap !== undefined ? 'ext4' : params.filesystem,
      offset: params.offset,
      sizeLimit: params.size,
      readOnly,
      nosuid: (params.flags & MS_NOSUID) !== 0,
      nodev: (params.flags & MS_NODEV) !== 0,
      noexec: (params.flags & MS_NOEXEC) !== 0,
      data: data.join(','),
      ...(params.idmap !== undefined ? { idmap: params.idmap } : {}),
      ...(params.shareLoopDevice && readOnly ? { loop: { shared: true } } : {}),
      ...(params.overlayAbove ? { overlay: params.overlayAbove } : {}),
      ...(params.signal ? { signal: params.signal } : {}),
    };
    const source = await loopSourceOf(params.source, params.sourcePath);
    let m: Mount | NamespaceMount;
    if (params.namespace) m = await mountInNamespace(params.namespace, source, params.target, options);
    else m = await mountPartitionImpl(source, params.pinned ?? params.inHop ?? params.target, options);
    const unmount = () => (m instanceof Mount ? m.unmount({ busyRetries: UNMOUNT_BUSY_RETRIES }) : m.unmount());
    // With an overlay above the partition, what was placed (and what close() unmounts) is the overlay.
    const top = params.overlayAbove ? { fstype: 'overlay', readOnly: (params.overlayAbove.flags & MS_RDONLY) !== 0 } : { fstype: options.fstype, readOnly };
    return new KernelMounted(m.target, top.fstype, top.readOnly, m.loopDevice, () => alreadyGoneIsFine(unmount()));
  }

  async #mountVirtual(params: DriverMountParams, readOnly: boolean, mountFunc: MountFunc): Promise<MountedFilesystem> {
    if (params.namespace) {
      throw new ImgmountError('ERR_DRIVER_UNAVAILABLE', `the kernel driver mounts ${params.filesystem} in this mount namespace only; move the result`);
    }
    // Pinned here (or by the caller): the MountFunc gets the fd's path, the handle the fd.
    const pinned = params.pinned ?? (await pinTarget(params.target));
    try {
      await mountFunc(params.source, pinned.procPath, params.filesystem, params.flags, params.fsOptions.join(','));
    } catch (err) {
      if (!params.pinned) await pinned.close();
      throw err;
    }
    return plainKernelMount(pinned, params.filesystem, readOnly);
  }
}

/** mount(2)-shaped MountFunc over lib/mount, for drivers that need one. */
export const kernelMountFunc: MountFunc = async (source, target, fstype, flags, data) => {
  await mountFs(source, target, fstype, flags, data);
};
