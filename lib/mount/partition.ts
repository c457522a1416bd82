// Image partitions: mountPartition() attaches a partition of an image to a loop device and
// mounts it read-only, nosuid, nodev by default, returning a Mount handle; buildMount() is the
// machinery it shares with mountInNamespace() (lib/ns) and the capability probes.
//
// The fast path is one worker hop: the loop commit step (lib/loop/setup.ts) binds the device
// with LOOP_CONFIGURE and the mount rides in the same native call (loopAttachMount); where the
// device is bound on its own (the legacy ioctls, a shared device) the mount follows it. Every
// decision stays in TS: the mount API (new, or mount(2) where missing or filtered), the loop
// policy (lib/loop), the error mapping (./errors.ts) and the undo when the device fails its
// check or the caller aborts after the kernel succeeded.

import * as fs from 'node:fs';
import { closeFd } from '../io/fd';
import { ImgmountError, invalidArgType, throwIfAborted } from '../errors';
import { PinnedDir, isPinDeclined, pinTarget, targetPinRequest, umountPinned } from '../path/pinned';
import { checkSource, resolveLoopOptions, type AttachLoopOptions, type LoopSource, type ResolvedLoopOptions } from '../loop/context';
import { loopBlockSizeFor } from '../loop/block-size';
import { LoopDevice } from '../loop/device';
import { abortError, signalOf } from '../util/abort';
import { bool, choice } from '../util/args';
import { debug } from '../util/debug';
import { api } from '../util/stack';
import { setupLoop } from '../loop/setup';
import { native, type NativeMountDone, type NativeMountSpec, type NativePathInfo, type NativeTargetPin } from '../native/binding';
import { openNamespace, type NamespaceFd, type NamespaceRef } from '../ns/namespace';
import { mapMountError } from './errors';
import { MS_NODEV, MS_NOEXEC, MS_NOSUID, MS_RDONLY, formatMountFlags, mountDataToString, mountFlagsToNumber, toNewApi, type MountData, type MountFlags } from './flags';
import { Mount, type MountInit } from './handle';
import { KERNEL_WORK_HOLD_MS, kernelWork } from './kernel-work';
import { str, type MountMethod } from './mount';
import { MOUNT_APIS, noteNewApiFailure, resolveMountApi, type MountApi } from './new-api';

export interface MountPartitionOptions {
  /** Filesystem type: 'squashfs', 'ext3', 'ext4' (ext3 images with an ID map), ... */
  fstype: string;
  /** Partition offset and size inside the image (bytes; size 0 = to the end). */
  offset?: number | bigint;
  sizeLimit?: number | bigint;
  /** Defaults true, true, true, false: image partitions are untrusted. */
  readOnly?: boolean;
  nosuid?: boolean;
  nodev?: boolean;
  noexec?: boolean;
  /** More mount flags, OR'ed in (numeric or named). */
  flags?: MountFlags;
  /** Filesystem options ("errors=remount-ro" or { errors: 'remount-ro' }). */
  data?: MountData;
  /** ID-map the mount through this user namespace (MOUNT_ATTR_IDMAP; new mount API only). */
  idmap?: NamespaceRef;
  /** Mount API; default IMGMOUNT_MOUNT_API or 'auto'. */
  api?: MountApi;
  /** Loop-device options (shared devices, limits, method...). blockSize defaults to 4096 for a squashfs whose offset and sizeLimit are multiples of 4 KiB (faster; see loop/block-size.ts), else to the kernel default. */
  loop?: Omit<AttachLoopOptions, 'offset' | 'sizeLimit' | 'readOnly' | 'autoclear' | 'signal'>;
  /** @internal The partition as the bottom layer of an overlay built and placed in the same call (see OverlayAbove). */
  overlay?: OverlayAbove;
  signal?: AbortSignal;
}

/**
 * An overlay over the partition, built in the mount's own native call with no layer ever in
 * the mount tree (the kernel takes detached mounts as layers by fd: overlayLayersSupported()).
 * The partition is the only lower layer; `tmpfs`, if given, is a fresh tmpfs whose `dirs`
 * (upper, work) are the writable layer. The layers live as long as the overlay.
 */
export interface OverlayAbove {
  tmpfs?: { flags: number; data: string; dirs: [[string, number], [string, number]] };
  /** The overlay's own flags and options, besides its layers. */
  flags: number;
  data?: string;
}

/**
 * Where the mount goes: onto a pinned directory here; onto a directory the mount's own native
 * call opens (`pin`, see targetPinRequest: no hop of its own, and an intent file written in it
 * too); or kept detached and returned as an fd.
 */
export type Placement = { target: PinnedDir; keepMountFd?: boolean } | InHopTarget | { detached: true };

/**
 * A target for the mount's own native call to open (lib/path targetPinRequest, plus what the
 * caller adds: the image owner to check again, an intent file). An intent file written there
 * is removed in the unmount's hop. `onPinned` gets the directory once mounted.
 */
export interface InHopTarget {
  pin: NativeTargetPin;
  onPinned?: (dir: PinnedDir) => void;
}

/**
 * A `pin` placement, or an `overlay`, that cannot be made in the mount's own call (the device is
 * not bound in it, the new mount API is missing, or the call's pin step refused: a symlink on the
 * path, another name, a system directory, an intent file there already, a changed image owner).
 * Nothing was done: the caller takes its general path (pinTarget(), which says what is wrong
 * with the target, then the mount; layers on a session directory).
 */
export class PinDeclined extends Error {
  constructor(readonly why: unknown) {
    super(`the target is pinned on its own: ${why instanceof Error ? why.message : String(why)}`);
  }
}

export interface BuiltMount extends MountInit {
  /** For a detached placement (or keepMountFd): the mount fd (owned by the caller; for a detached mount closing it unmounts). */
  mountFd: number | null;
  /** statx mount id of the new mount (0 where unknown). */
  mountId: number | bigint;
  /** With a `pin` placement: the target the call opened, now the caller's. */
  pinned?: PinnedDir;
}

export interface Prepared {
  fstype: string;
  flags: number;
  data: string | undefined;
  requested: MountApi | undefined;
  signal: AbortSignal | undefined;
  loop: ResolvedLoopOptions;
}

/** Options of a partition mount after validation and defaults. */
export function resolvePartitionOptions(options: MountPartitionOptions): Prepared {
  if (typeof options !== 'object' || options === null) throw invalidArgType('options', 'an object with fstype', options);
  const fstype = str('options.fstype', options.fstype);
  const readOnly = bool('options.readOnly', options.readOnly, true);
  const flags =
    (readOnly ? MS_RDONLY : 0) |
    (bool('options.nosuid', options.nosuid, true) ? MS_NOSUID : 0) |
    (bool('options.nodev', options.nodev, true) ? MS_NODEV : 0) |
    (bool('options.noexec', options.noexec, false) ? MS_NOEXEC : 0) |
    mountFlagsToNumber(options.flags, 'options.flags');
  const signal = signalOf(options.signal);
  const loop = resolveLoopOptions({
    ...(options.loop ?? {}),
    ...(options.offset !== undefined ? { offset: options.offset } : {}),
    ...(options.sizeLimit !== undefined ? { sizeLimit: options.sizeLimit } : {}),
    readOnly: (flags & MS_RDONLY) !== 0,
    autoclear: true,
    ...(signal ? { signal } : {}),
  });
  // Unless asked otherwise: 4 KiB loop blocks where the filesystem and bounds allow (see loop/block-size.ts).
  if (options.loop?.blockSize === undefined) loop.blockSize = loopBlockSizeFor(fstype, loop.offset, loop.sizeLimit);
  return {
    fstype,
    flags: flags >>> 0,
    data: mountDataToString(options.data),
    requested: choice('options.api', options.api, MOUNT_APIS),
    signal,
    loop,
  };
}

/**
 * Mounts a partition of `source` (attached here, or an attached LoopDevice) at `place`. A
 * source to attach goes through the loop commit step with the mount as its use: in the
 * binding hop where it can, after the binding otherwise.
 */
export async function buildMount(source: LoopSource | LoopDevice, place: Placement, options: MountPartitionOptions): Promise<BuiltMount> {
  if (!(source instanceof LoopDevice)) checkSource(source);
  const p = resolvePartitionOptions(options);
  throwIfAborted(p.signal);
  const detached = 'detached' in place;
  const pinned = 'target' in place ? place.target : undefined;
  const inHop = 'pin' in place ? place.pin : undefined;
  const keepMountFd = 'target' in place && place.keepMountFd === true;
  const target = pinned?.path ?? inHop?.path ?? '';
  const overlay = options.overlay;
  // The pin and the overlay ride in the call that binds the device: LOOP_CONFIGURE of a fresh
  // device (a kernel found without it refuses them before binding: onlyFused below); the
  // overlay only with the new mount API, placed.
  if ((inHop || overlay) && (source instanceof LoopDevice || p.loop.shared)) throw new PinDeclined("the loop device is not bound in the mount's own call");
  const needsNew = detached || keepMountFd || options.idmap !== undefined;
  if (overlay && needsNew) throw new PinDeclined('an overlay in the mount call is placed, and not ID-mapped');
  let api: MountMethod = await resolveMountApi(p.requested);
  if (overlay && api === 'legacy') throw new PinDeclined('an overlay in the mount call needs the new mount API');
  if (needsNew && api === 'legacy')
    throw new ImgmountError(
      options.idmap !== undefined ? 'ERR_IDMAP_UNSUPPORTED' : 'ERR_MOUNT_FAILED',
      `${options.idmap !== undefined ? 'ID-mapped mounts' : 'detached mounts'} need the new mount API, which is ${p.requested ?? process.env.IMGMOUNT_MOUNT_API ?? 'auto'
      } here and unavailable or switched off`,
    );
  let userns: NamespaceFd | undefined;
  if (options.idmap !== undefined) userns = await openNamespace(options.idmap, 'user');
  const ctx = { fstype: p.fstype, target, ...(typeof source === 'string' ? { source } : {}) };

  /** `flags` and `data` as the new mount API takes them; ERR_MOUNT_FAILED where it cannot. */
  const newApi = (flags: number, data: string | undefined, what: string): NonNullable<ReturnType<typeof toNewApi>> => {
    const n = toNewApi(flags, data);
    if (!n) throw new ImgmountError('ERR_MOUNT_FAILED', `flags ${formatMountFlags(flags)} cannot be used for ${what}`);
    return n;
  };
  const mountSpec = (src?: string): NativeMountSpec => {
    const fresh = api === 'new' ? newApi(p.flags, p.data, 'a partition mount') : null;
    if (fresh && overlay) return overlaySpec(fresh, src);
    return fresh
      ? {
          api: 'new',
          fstype: p.fstype,
          target,
          ...(pinned ? { targetFd: pinned.fd } : {}),
          ...(inHop ? { pin: inHop } : {}),
          options: fresh.options,
          attrs: fresh.attrs,
          detached,
          keepMountFd,
          ...(src ? { source: src } : {}),
          ...(userns ? { usernsFd: userns.fd } : {}),
        }
      : {
          api: 'legacy',
          fstype: p.fstype,
          target,
          ...(inHop ? { pin: inHop } : { targetFd: pinned!.fd }),
          flags: p.flags,
          ...(p.data !== undefined ? { data: p.data } : {}),
          ...(src ? { source: src } : {}),
        };
  };
  /** The partition mounted detached as the lower layer, and the overlay placed where the partition would be. */
  const overlaySpec = (lower: NonNullable<ReturnType<typeof toNewApi>>, src?: string): NativeMountSpec => {
    const o = overlay!;
    const top = newApi(o.flags, o.data, 'an overlay');
    const tmpfs = o.tmpfs ? newApi(o.tmpfs.flags, o.tmpfs.data, 'a tmpfs layer') : undefined;
    return {
      api: 'new',
      fstype: p.fstype,
      target,
      ...(inHop ? { pin: inHop } : {}),
      options: lower.options,
      attrs: lower.attrs,
      detached: true,
      keepMountFd: false,
      ...(src ? { source: src } : {}),
      overlay: {
        upper: tmpfs ? { api: 'new', fstype: 'tmpfs', source: 'tmpfs', target, options: tmpfs.options, attrs: tmpfs.attrs, detached: true, keepMountFd: false } : null,
        dirs: o.tmpfs ? [...o.tmpfs.dirs] : [],
        spec: { api: 'new', fstype: 'overlay', source: 'overlay', target, ...(pinned ? { targetFd: pinned.fd } : {}), options: top.options, attrs: top.attrs, detached: false, keepMountFd: false },
      },
    };
  };
  // A mount step failed (its loop device is already released): fall back to mount(2) if the
  // new API turned out to be missing, else report the mapped error.
  const onMountError = async (err: unknown): Promise<boolean> => {
    if (isPinDeclined(err)) throw new PinDeclined(err);
    if (overlay && api === 'new' && noteNewApiFailure(err, p.requested)) throw new PinDeclined(err);
    if (api === 'new' && !needsNew && noteNewApiFailure(err, p.requested)) {
      api = 'legacy';
      return true;
    }
    throw mapMountError(err, ctx);
  };
  const undo = async (b: { mountFd: number | null; pinned?: PinnedDir }): Promise<void> => {
    if (b.mountFd !== null) await closeFd(b.mountFd).catch(() => undefined);
    const on = b.pinned ?? pinned;
    if (on) await umountPinned(on, 0).catch(() => undefined);
    // What the call pinned and wrote is undone with the mount: the caller gets nothing.
    if (b.pinned) await b.pinned.close();
    if (inHop?.intent) await fs.promises.unlink(inHop.intent.path).catch(() => undefined);
  };
  const inHopPinned = (info: NativePathInfo): PinnedDir => {
    const dir = new PinnedDir(info);
    if (inHop?.intent) dir.removeOnUnmount = inHop.intent.path;
    return dir;
  };
  const builtOn = (loop: { path: string; number: number }, spec: NativeMountSpec, done: NativeMountDone, on?: PinnedDir): BuiltMount => ({
    target: spec.target ?? '',
    // With an overlay above it, the mount is the overlay (the partition one of its layers).
    source: overlay ? 'overlay' : loop.path,
    fstype: overlay ? 'overlay' : p.fstype,
    flags: overlay ? overlay.flags : p.flags,
    method: api,
    loopDevice: loop.path,
    loopNumber: loop.number,
    idmapped: userns !== undefined,
    messages: done.messages,
    mountFd: done.mountFd,
    mountId: done.mountId ?? 0,
    ...(on ? { pinned: on } : {}),
  });
  /** Mounts an attached device, falling back to mount(2) as onMountError says. */
  const mountOn = async (dev: LoopDevice): Promise<BuiltMount> => {
    for (;;) {
      const spec = mountSpec(dev.path);
      let done: NativeMountDone;
      try {
        if (spec.api === 'new') done = await native((b) => b.fsMount(spec));
        else {
          const at = spec.targetFd !== undefined ? `/proc/self/fd/${spec.targetFd}` : spec.target!;
          await native((b) => b.mount(dev.path, at, p.fstype, p.flags, p.data ?? null));
          done = { mountFd: null, messages: [] };
        }
      } catch (err) {
        if (await onMountError(err)) continue;
        throw err;
      }
      return builtOn(dev, spec, done);
    }
  };

  try {
    const built =
      source instanceof LoopDevice
        ? await mountOn(source)
        : await setupLoop<BuiltMount>(source, p.loop, {
            fused: async (loopSpec) => {
              const spec = mountSpec();
              const r = await kernelWork.runBriefly(() => native((b) => b.loopAttachMount(loopSpec, spec, false)), KERNEL_WORK_HOLD_MS);
              debug('mounted %s (%s) on %s via %s, loop %s', loopSpec.imagePath || loopSpec.imageFd, p.fstype, target || '(detached)', api, r.path);
              return { bound: r, use: builtOn(r, spec, r, r.target ? inHopPinned(r.target) : undefined) };
            },
            retry: onMountError,
            separate: mountOn,
            undo,
            ...(inHop || overlay ? { onlyFused: () => new PinDeclined('the loop device would be bound on its own') } : {}),
          });
    if (p.signal?.aborted) {
      await undo(built);
      throw abortError(p.signal);
    }
    return built;
  } finally {
    await userns?.close();
  }
}

/**
 * Attaches `source` (a path, an fd, an Image-like { fd, path }, or an attached LoopDevice)
 * and mounts the partition at `target`. Read-only, nosuid and nodev unless told otherwise.
 * The loop device is auto-cleared when the mount goes away (a LoopDevice passed in stays
 * the caller's). If `signal` fires after the kernel mounted, the mount is undone.
 */
export function mountPartition(source: LoopSource | LoopDevice, target: string | PinnedDir, options: MountPartitionOptions): Promise<Mount> {
  return api(mountPartition, () => mountPartitionImpl(source, target, options));
}

/**
 * mountPartition() for callers inside the library, which run after awaits of their own: there
 * is no caller's stack to take up front (a failure still gets the awaiting callers' frames).
 */
export async function mountPartitionImpl(source: LoopSource | LoopDevice, target: string | PinnedDir | InHopTarget, options: MountPartitionOptions): Promise<Mount> {
  // A path: pinned in the mount's own call where it can be, else here; the Mount owns it.
  // Given pinned: the Mount takes it over once mounted. In the hop, as the caller asks: a
  // PinDeclined goes to the caller.
  if (typeof target === 'object' && 'pin' in target) {
    const built = await buildMount(source, target, options);
    target.onPinned?.(built.pinned!);
    return new Mount(built, built.pinned!);
  }
  if (typeof target === 'string') {
    const pin = await targetPinRequest(str('target', target));
    if (pin) {
      try {
        const built = await buildMount(source, { pin }, options);
        return new Mount(built, built.pinned!);
      } catch (err) {
        if (!(err instanceof PinDeclined)) throw err;
        debug('mount at %s: %s', target, err.message);
      }
    }
  }
  const pinned = target instanceof PinnedDir ? target : await pinTarget(str('target', target));
  try {
    const built = await buildMount(source, { target: pinned }, options);
    return new Mount(built, pinned);
  } catch (err) {
    if (!(target instanceof PinnedDir)) await pinned.close();
    throw err;
  }
}
