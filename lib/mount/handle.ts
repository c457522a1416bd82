// Mount: the handle of a mounted partition (what mountPartition() returns). It unmounts
// through the pinned mount point, never by looking the target's name up again.

import { RetryableOnce } from '../util/once';
import type { PinnedDir } from '../path/pinned';
import { MNT_DETACH, MNT_FORCE, MS_RDONLY } from './flags';
import { umount, unmountPinnedOnce, type MountMethod } from './mount';

export interface UnmountOptions {
  /** MNT_DETACH: detach now, clean up when no longer busy. */
  lazy?: boolean;
  /** MNT_FORCE. */
  force?: boolean;
  /** Retries while EBUSY, with back-off (default 0). */
  busyRetries?: number;
  signal?: AbortSignal;
}

export interface MountInit {
  target: string;
  source: string;
  fstype: string;
  flags: number;
  method: MountMethod;
  loopDevice: string | null;
  loopNumber: number | null;
  idmapped: boolean;
  messages: string[];
}

/**
 * A mounted partition. close() (or `await using`) unmounts it: idempotent, and a mount someone
 * else already unmounted counts as closed. unmount(options) is the same with MNT_DETACH,
 * MNT_FORCE or EBUSY retries, and reports ERR_NOT_MOUNTED when it was gone.
 */
export class Mount implements AsyncDisposable {
  readonly target: string;
  /** What was mounted (the loop device path). */
  readonly source: string;
  readonly fstype: string;
  /** mount(2) flags in effect (MS_RDONLY|MS_NOSUID|MS_NODEV by default). */
  readonly flags: number;
  /** Which API mounted it. */
  readonly method: MountMethod;
  /** The loop device (auto-cleared with the unmount unless it is shared with other users). */
  readonly loopDevice: string | null;
  readonly loopNumber: number | null;
  readonly idmapped: boolean;
  readonly messages: readonly string[];
  readonly #release = new RetryableOnce();
  /** The mount point as an fd: unmounted through it, never by looking its name up again. */
  readonly #pinned: PinnedDir | null;

  /** @internal */
  constructor(init: MountInit, pinned: PinnedDir | null = null) {
    this.#pinned = pinned;
    this.target = init.target;
    this.source = init.source;
    this.fstype = init.fstype;
    this.flags = init.flags;
    this.method = init.method;
    this.loopDevice = init.loopDevice;
    this.loopNumber = init.loopNumber;
    this.idmapped = init.idmapped;
    this.messages = Object.freeze([...init.messages]);
  }

  get readOnly(): boolean {
    return (this.flags & MS_RDONLY) !== 0;
  }

  get unmounted(): boolean {
    return this.#release.started;
  }

  /** True once close() or unmount() was called (and did not fail). */
  get closed(): boolean {
    return this.#release.started;
  }

  unmount(options: UnmountOptions = {}): Promise<void> {
    const flags = (options.lazy ? MNT_DETACH : 0) | (options.force ? MNT_FORCE : 0);
    const how = {
      ...(options.busyRetries !== undefined ? { busyRetries: options.busyRetries } : {}),
      ...(options.signal ? { signal: options.signal } : {}),
    };
    return this.#release.run(() => (this.#pinned ? unmountPinnedOnce(this.#pinned, flags, how) : umount(this.target, flags, how)));
  }

  /** Unmounts it (see the class); idempotent. */
  close(): Promise<void> {
    return this.#release.dispose(() => this.unmount());
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  toJSON(): MountInit {
    return { target: this.target, source: this.source, fstype: this.fstype, flags: this.flags, method: this.method, loopDevice: this.loopDevice, loopNumber: this.loopNumber, idmapped: this.idmapped, messages: [...this.messages] };
  }
}
