// What the built-in drivers (kernel, FUSE) take and give back.

import type { NamespaceRef, NamespaceTarget } from '../ns/namespace';
import type { MountParams } from '../image/driver';
import type { PinnedDir } from '../path/pinned';
import type { InHopTarget, OverlayAbove } from '../mount/partition';

export type DriverName = 'kernel' | 'fuse';

/** Our extensions of Apptainer's MountParams (all optional). */
export interface DriverMountParams extends MountParams {
  /** Mount into this mount namespace (a container's) instead of ours; `target` is a path there. */
  namespace?: NamespaceTarget;
  /**
   * The target, already pinned (lib/path): the mount lands on this fd and `target` only names
   * it. The returned handle owns it once mounted (a failed mount leaves it the caller's).
   * Without it a driver pins `target` itself.
   */
  pinned?: PinnedDir;
  /** @internal Kernel driver, instead of `pinned`: the target opened in the mount's own call (a PinDeclined when it cannot be). */
  inHop?: InHopTarget;
  /** @internal Kernel driver: the partition as the bottom layer of an overlay built in the same call; the result is the overlay. */
  overlayAbove?: OverlayAbove;
  /**
   * The image's path, for messages, when `source` is `/proc/self/fd/N` of an image we opened
   * (saves asking the kernel where the fd leads).
   */
  sourcePath?: string;
  /** Reuse a loop device bound to the same file, offset and size (kernel driver, read-only mounts). */
  shareLoopDevice?: boolean;
  /** ID-map the mount through this user namespace (kernel driver, new mount API). */
  idmap?: NamespaceRef;
  /** How long a FUSE helper may take to serve its mount (default 10 s). */
  timeoutMs?: number;
  signal?: AbortSignal;
}

/** A mounted filesystem and everything that serves it (loop device, helper process). */
export interface MountedFilesystem extends AsyncDisposable {
  readonly target: string;
  readonly driver: DriverName;
  /** Filesystem type as mountinfo shows it ("squashfs", "ext3", "fuse.squashfuse_ll", "overlay"). */
  readonly fstype: string;
  readonly readOnly: boolean;
  /** Loop device path (kernel driver) or null. */
  readonly loopDevice: string | null;
  /** FUSE helper programs serving this mount, outermost last. */
  readonly helpers: ReadonlyArray<{ program: string; pid: number }>;
  /** True once close() was called. */
  readonly closed: boolean;
  /** Unmounts and releases everything (loop device, helpers, internal mounts). Idempotent. */
  close(): Promise<void>;
}
