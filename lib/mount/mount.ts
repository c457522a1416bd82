// Mounting: the seed's MountFunc (mount/umount with numeric or named flags) and
// mountPartition(), which attaches an image partition to a loop device and mounts it
// read-only, nosuid, nodev by default, returning a Mount handle.
//
// The fast path is one worker hop (loop GET_FREE + CONFIGURE + the mount, native
// loopAttachMount) and one for the umount: the hop count is what separates Node from C here.
// Every decision stays in TS: the mount API (new, or mount(2) where missing or filtered), the
// loop retries (lib/loop/attach.ts), the error mapping (./errors.ts) and the undo when
// verification fails or the caller aborts after the kernel succeeded.

import { RetryableOnce } from '../util/once';
import { checkpoint } from '../util/checkpoint';
import { closeFd } from '../io/fd';
import * as nodePath from 'node:path';
import { ImgmountError, invalidArgType, throwIfAborted } from '../errors';
import { O_PATH, PinnedDir, pinTarget, umountPinned } from '../path/pinned';
import { systemTargetReason } from '../path/system-targets';
import {
  LoopDevice,
  attachLoop,
  checkSource,
  expectationOf,
  injectedBindErrno,
  loFileName,
  loFlags,
  loopMethod,
  resolveLoopOptions,
  statusMismatches,
  verifyError,
  withAttachRetries,
  type AttachLoopOptions,
  type LoopSource,
} from '../loop/attach';
import { abortError, signalOf, sleep } from '../util/abort';
import { bool, choice } from '../util/args';
import { backoffMs } from '../util/backoff';
import { debug } from '../util/debug';
import { api } from '../util/stack';
import { isSystemError } from '../util/system-error';
import { counters, noFreeLoopDevice } from '../loop/internal';
import { constants as fsConstants } from 'node:fs';
import { native, type NativeMountDone, type NativeMountSpec } from '../native/binding';
import { openNamespace, type NamespaceFd, type NamespaceRef } from '../ns/namespace';
import { mapMountError } from './errors';
import {
  MNT_DETACH,
  MNT_FORCE,
  MS_BIND,
  MS_MOVE,
  MS_NODEV,
  MS_NOEXEC,
  MS_NOSUID,
  MS_PRIVATE,
  MS_RDONLY,
  MS_REMOUNT,
  MS_SHARED,
  MS_SLAVE,
  MS_UNBINDABLE,
  formatMountFlags,
  mountDataToString,
  mountFlagsToNumber,
  toNewApi,
  umountFlagsToNumber,
  type MountData,
  type MountFlags,
  type UmountFlags,
} from './flags';
import { MOUNT_APIS, noteNewApiFailure, resolveMountApi, type MountApi } from './new-api';

export type MountMethod = 'new' | 'legacy';

export interface MountResult {
  /** 'new': fsopen/fsconfig/fsmount/move_mount; 'legacy': mount(2). */
  method: MountMethod;
  /** Informational messages the kernel left in the fs context (new API only). */
  messages: string[];
}

export interface MountCallOptions {
  /** Force an API; default IMGMOUNT_MOUNT_API or 'auto'. */
  api?: MountApi;
  /** If it fires after the kernel mounted, the mount is undone and an AbortError thrown. */
  signal?: AbortSignal;
}

function str(name: string, v: unknown): string {
  if (typeof v !== 'string' || v.length === 0 || v.includes('\0')) throw invalidArgType(name, 'a non-empty string', v);
  return v;
}

/** Whether mount(2) flags attach something at the target (rather than change a mount already there). */
function attaches(flags: number): boolean {
  if (flags & MS_REMOUNT) return false;
  const propagation = MS_SHARED | MS_PRIVATE | MS_SLAVE | MS_UNBINDABLE;
  return !(flags & propagation) || (flags & (MS_BIND | MS_MOVE)) !== 0;
}

/**
 * Apptainer's MountFunc: mount(source, target, fstype, flags, data). Flags are the numeric
 * uintptr or named options. A plain filesystem mount goes through the new API where usable;
 * bind, move, remount and propagation changes go through mount(2). Nothing is defaulted:
 * image partitions get their safe defaults from mountPartition().
 *
 * A target that something is attached to is pinned first (opened once, as the caller wrote
 * it; a system directory is ERR_UNSAFE_TARGET) and mounted onto by fd. A PinnedDir is used
 * as it is and stays the caller's.
 */
export function mount(
  source: string | null,
  target: string | PinnedDir,
  fstype: string | null,
  flags: MountFlags = 0,
  data?: MountData | null,
  options: MountCallOptions = {},
): Promise<MountResult> {
  return api(mount, () => mountImpl(source, target, fstype, flags, data, options));
}

async function mountImpl(
  source: string | null,
  target: string | PinnedDir,
  fstype: string | null,
  flags: MountFlags = 0,
  data?: MountData | null,
  options: MountCallOptions = {},
): Promise<MountResult> {
  if (source !== null) str('source', source);
  if (!(target instanceof PinnedDir)) str('target', target);
  if (fstype !== null) str('fstype', fstype);
  const n = mountFlagsToNumber(flags);
  const d = data == null ? undefined : mountDataToString(data);
  const requested = choice('options.api', options.api, MOUNT_APIS);
  const signal = signalOf(options.signal);
  checkpoint('mount:start', signal);
  let api = await resolveMountApi(requested);
  checkpoint('mount:api', signal);
  const own = !(target instanceof PinnedDir) && attaches(n) ? await pinTarget(target) : undefined;
  const pinned = target instanceof PinnedDir ? target : own;
  const where = pinned ? pinned.path : (target as string);
  const ctx = { fstype: fstype ?? '', target: where, ...(source !== null ? { source } : {}) };
  try {
    checkpoint('mount:pinned', signal);
    for (;;) {
      const spec = api === 'new' && fstype !== null ? toNewApi(n, d) : null;
      try {
        let messages: string[] = [];
        if (spec) {
          // mount(2) reads "fuse.squashfuse" as type fuse, subtype squashfuse; fsopen() takes
          // the type alone and the subtype as a parameter.
          const dot = fstype!.indexOf('.');
          const fsType = dot > 0 ? fstype!.slice(0, dot) : fstype!;
          const options: Array<[string, string | null]> = dot > 0 ? [['subtype', fstype!.slice(dot + 1)], ...spec.options] : spec.options;
          messages = (
            await native((b) =>
              b.fsMount({ api: 'new', fstype: fsType, target: where, ...(pinned ? { targetFd: pinned.fd } : {}), options, attrs: spec.attrs, ...(source !== null ? { source } : {}) }),
            )
          ).messages;
        } else {
          await native((b) => b.mount(source, pinned ? pinned.procPath : where, fstype, n, d ?? null));
        }
        const result: MountResult = { method: spec ? 'new' : 'legacy', messages };
        debug('mount %s on %s (%s, %s) via %s', source, where, fstype, formatMountFlags(n), result.method);
        try {
          checkpoint('mount:mounted', signal);
        } catch (err) {
          if (pinned && attaches(n)) await umountPinned(pinned, 0).catch(() => undefined);
          throw err;
        }
        return result;
      } catch (err) {
        if (spec && noteNewApiFailure(err, requested)) {
          api = 'legacy';
          continue;
        }
        throw mapMountError(err, ctx);
      }
    }
  } finally {
    await own?.close();
  }
}

/**
 * A filesystem mount made with the new API and kept detached: nothing is attached anywhere
 * until the caller moves it (into another namespace, or onto a pinned directory). Returns the
 * mount fd (closing it dissolves the mount) and its mount id.
 */
export async function mountDetached(source: string | null, fstype: string, flags: number, data: string | undefined): Promise<{ fd: number; mountId: number | bigint }> {
  const spec = toNewApi(flags, data);
  if (!spec) throw new ImgmountError('ERR_MOUNT_FAILED', `flags ${formatMountFlags(flags)} cannot be used for a detached mount`);
  const dot = fstype.indexOf('.');
  const fsType = dot > 0 ? fstype.slice(0, dot) : fstype;
  const options: Array<[string, string | null]> = dot > 0 ? [['subtype', fstype.slice(dot + 1)], ...spec.options] : spec.options;
  try {
    const done = await native((b) => b.fsMount({ api: 'new', fstype: fsType, options, attrs: spec.attrs, detached: true, ...(source !== null ? { source } : {}) }));
    return { fd: done.mountFd!, mountId: done.mountId ?? 0 };
  } catch (err) {
    throw mapMountError(err, { fstype, ...(source !== null ? { source } : {}) });
  }
}

/** Retries `attempt` while the kernel says EBUSY (with back-off), up to `retries` times. */
export async function withBusyRetries(attempt: () => Promise<void>, retries: number, signal?: AbortSignal): Promise<void> {
  for (let i = 0; ; i++) {
    throwIfAborted(signal);
    try {
      return await attempt();
    } catch (err) {
      if (isSystemError(err, 'EBUSY') && i < retries) {
        await sleep(backoffMs(i, 5, 500), signal);
        continue;
      }
      throw err;
    }
  }
}

export interface UmountOptions {
  /** Retries while the kernel says EBUSY, with back-off (default 0). */
  busyRetries?: number;
  /** @internal A PinnedDir target is closed in the same hop once unmounted. */
  releasePinned?: boolean;
  signal?: AbortSignal;
}

/**
 * Apptainer's umount(target, flags): umount2. A PinnedDir is unmounted through its fd (the
 * topmost mount on that very directory). A path is looked up once: its parent as written,
 * then its last component without following a symlink there (UMOUNT_NOFOLLOW). Nothing
 * mounted there (EINVAL), or no such path (ENOENT), is ERR_NOT_MOUNTED (the SystemError is
 * its cause); a system directory (/, /proc, ...) is ERR_UNSAFE_TARGET.
 */
export function umount(target: string | PinnedDir, flags?: UmountFlags, options: UmountOptions = {}): Promise<void> {
  return api(umount, () => umountImpl(target, flags, options));
}

async function umountImpl(target: string | PinnedDir, flags?: UmountFlags, options: UmountOptions = {}): Promise<void> {
  const n = umountFlagsToNumber(flags);
  const signal = signalOf(options.signal);
  const retries = options.busyRetries ?? 0;
  if (target instanceof PinnedDir) {
    await withBusyRetries(() => umountPinned(target, n, { release: options.releasePinned === true }), retries, signal);
    debug('umount %s', target.path);
    return;
  }
  str('target', target);
  const abs = nodePath.resolve(target);
  const name = nodePath.basename(abs);
  let parent;
  try {
    parent = await native((b) => b.openAt(-1, nodePath.dirname(abs), O_PATH | fsConstants.O_DIRECTORY, 0));
  } catch (err) {
    if (isSystemError(err, 'ENOENT') || isSystemError(err, 'ENOTDIR')) throw notMounted(abs, err);
    throw err;
  }
  try {
    const canonical = name === '' ? parent.path : nodePath.join(parent.path, name);
    const why = systemTargetReason(canonical);
    if (why) throw new ImgmountError('ERR_UNSAFE_TARGET', `refusing to unmount ${abs}: ${why}`, { path: abs });
    await withBusyRetries(() => native((b) => b.umountAt(parent.fd, name, n, abs)), retries, signal);
    debug('umount %s', abs);
  } catch (err) {
    if (isSystemError(err, 'EINVAL') || isSystemError(err, 'ENOENT')) throw notMounted(abs, err);
    throw err;
  } finally {
    await closeFd(parent.fd).catch(() => undefined);
  }
}

function notMounted(target: string, cause: unknown): ImgmountError {
  return new ImgmountError('ERR_NOT_MOUNTED', `${target} is not a mount point`, { cause, path: target });
}

// ---------------------------------------------------------------------------------------

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
  /** Loop-device options (shared devices, limits, method...). */
  loop?: Omit<AttachLoopOptions, 'offset' | 'sizeLimit' | 'readOnly' | 'autoclear' | 'signal'>;
  signal?: AbortSignal;
}

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

/**
 * Unmounts through a pinned mount point and closes it once the mount is gone (or was gone
 * already: ERR_NOT_MOUNTED, and later calls say so without touching the closed fd).
 */
export async function unmountPinnedOnce(pinned: PinnedDir, flags: number, options: UmountOptions = {}): Promise<void> {
  if (pinned.closed) throw notMounted(pinned.path, undefined);
  try {
    await umount(pinned, flags, { ...options, releasePinned: true });
  } catch (err) {
    if (isSystemError(err) || !(err instanceof ImgmountError) || err.code !== 'ERR_NOT_MOUNTED') throw err;
    await pinned.close();
    throw err;
  }
  await pinned.close();
}

// ---------------------------------------------------------------------------------------
// buildMount(): the shared machinery of mountPartition() and lib/ns mountInNamespace().

/** Where the mount goes: onto a pinned directory here, or kept detached and returned as an fd. */
export type Placement = { target: PinnedDir; keepMountFd?: boolean } | { detached: true };

export interface BuiltMount extends MountInit {
  /** For a detached placement (or keepMountFd): the mount fd (owned by the caller; for a detached mount closing it unmounts). */
  mountFd: number | null;
  /** statx mount id of the new mount (0 where unknown). */
  mountId: number | bigint;
}

export interface Prepared {
  fstype: string;
  flags: number;
  data: string | undefined;
  requested: MountApi | undefined;
  signal: AbortSignal | undefined;
  loop: ReturnType<typeof resolveLoopOptions>;
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
  return {
    fstype,
    flags: flags >>> 0,
    data: mountDataToString(options.data),
    requested: choice('options.api', options.api, MOUNT_APIS),
    signal,
    loop,
  };
}

const USE_SEPARATE_ATTACH = Symbol('use separate attach');

export async function buildMount(source: LoopSource | LoopDevice, place: Placement, options: MountPartitionOptions): Promise<BuiltMount> {
  if (!(source instanceof LoopDevice)) checkSource(source);
  const p = resolvePartitionOptions(options);
  throwIfAborted(p.signal);
  const detached = 'detached' in place;
  const pinned = detached ? undefined : place.target;
  const keepMountFd = !detached && place.keepMountFd === true;
  const target = pinned?.path ?? '';
  const needsNew = detached || keepMountFd || options.idmap !== undefined;
  let api: MountMethod = await resolveMountApi(p.requested);
  if (needsNew && api === 'legacy')
    throw new ImgmountError(
      options.idmap !== undefined ? 'ERR_IDMAP_UNSUPPORTED' : 'ERR_MOUNT_FAILED',
      `${options.idmap !== undefined ? 'ID-mapped mounts' : 'detached mounts'} need the new mount API, which is ${p.requested ?? process.env.IMGMOUNT_MOUNT_API ?? 'auto'
      } here and unavailable or switched off`,
    );
  let userns: NamespaceFd | undefined;
  if (options.idmap !== undefined) userns = await openNamespace(options.idmap, 'user');
  const ctx = { fstype: p.fstype, target, ...(typeof source === 'string' ? { source } : {}) };

  const mountSpec = (src?: string): NativeMountSpec => {
    const fresh = api === 'new' ? toNewApi(p.flags, p.data) : null;
    if (api === 'new' && !fresh) throw new ImgmountError('ERR_MOUNT_FAILED', `flags ${formatMountFlags(p.flags)} cannot be used for a partition mount`);
    return fresh
      ? {
          api: 'new',
          fstype: p.fstype,
          target,
          ...(pinned ? { targetFd: pinned.fd } : {}),
          options: fresh.options,
          attrs: fresh.attrs,
          detached,
          keepMountFd,
          ...(src ? { source: src } : {}),
          ...(userns ? { usernsFd: userns.fd } : {}),
        }
      : { api: 'legacy', fstype: p.fstype, target, targetFd: pinned!.fd, flags: p.flags, ...(p.data !== undefined ? { data: p.data } : {}), ...(src ? { source: src } : {}) };
  };
  // A mount step failed (its loop device is already released): fall back to mount(2) if the
  // new API turned out to be missing, else report the mapped error.
  const onMountError = async (err: unknown): Promise<boolean> => {
    if (err === USE_SEPARATE_ATTACH) throw err;
    if (api === 'new' && !needsNew && noteNewApiFailure(err, p.requested)) {
      api = 'legacy';
      return true;
    }
    throw mapMountError(err, ctx);
  };
  const undo = async (b: { mountFd: number | null }): Promise<void> => {
    if (b.mountFd !== null) await closeFd(b.mountFd).catch(() => undefined);
    if (pinned) await umountPinned(pinned, 0).catch(() => undefined);
  };

  try {
    let built: BuiltMount;
    if (source instanceof LoopDevice) {
      built = await mountExisting(source, p, mountSpec, onMountError, () => api, userns !== undefined);
    } else {
      try {
        built = await fusedAttachMount(source, p, mountSpec, onMountError, () => api, userns !== undefined);
      } catch (err) {
        if (err !== USE_SEPARATE_ATTACH) throw err;
        const dev = await attachLoop(source, {
          ...(options.loop ?? {}),
          offset: p.loop.offset,
          sizeLimit: p.loop.sizeLimit,
          readOnly: p.loop.readOnly,
          autoclear: true,
          ...(p.signal ? { signal: p.signal } : {}),
        });
        let made: BuiltMount;
        try {
          made = await mountExisting(dev, p, mountSpec, onMountError, () => api, userns !== undefined);
        } catch (err) {
          // Not mounted: detached now.
          await dev.close();
          throw err;
        }
        // Mounted: the device stays while the mount uses it and is auto-cleared afterwards (the
        // autoclear flag was verified at attach; a reused shared device stays its first
        // owner's), so only our fd goes. Should even that fail, the mount is undone too.
        try {
          await dev.close({ detach: false });
        } catch (err) {
          await undo(made);
          throw err;
        }
        built = made;
      }
    }
    if (p.signal?.aborted) {
      await undo(built);
      throw abortError(p.signal);
    }
    return built;
  } finally {
    await userns?.close();
  }
}

async function mountExisting(
  dev: LoopDevice,
  p: Prepared,
  mountSpec: (src?: string) => NativeMountSpec,
  onMountError: (err: unknown) => Promise<boolean>,
  api: () => MountMethod,
  idmapped: boolean,
): Promise<BuiltMount> {
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
    return {
      target: spec.target ?? '',
      source: dev.path,
      fstype: p.fstype,
      flags: p.flags,
      method: api(),
      loopDevice: dev.path,
      loopNumber: dev.number,
      idmapped,
      messages: done.messages,
      mountFd: done.mountFd,
      mountId: done.mountId ?? 0,
    };
  }
}

async function fusedAttachMount(
  source: LoopSource,
  p: Prepared,
  mountSpec: (src?: string) => NativeMountSpec,
  onMountError: (err: unknown) => Promise<boolean>,
  api: () => MountMethod,
  idmapped: boolean,
): Promise<BuiltMount> {
  const o = p.loop;
  if (o.shared || (await loopMethod(o.api)) !== 'configure') throw USE_SEPARATE_ATTACH;
  const path = typeof source === 'string' ? source : typeof source === 'number' ? `/proc/self/fd/${source}` : source.path;
  const image = typeof source === 'string' ? { imageFd: -1, imagePath: source } : { imageFd: typeof source === 'number' ? source : source.fd };
  const r = await withAttachRetries(
    o,
    async ({ method, device, attempt }) => {
      if (method !== 'configure') throw USE_SEPARATE_ATTACH;
      const spec = mountSpec();
      return native((b) =>
        b.loopAttachMount(
          {
            ...image,
            ...(device !== undefined ? { device } : {}),
            openReadOnly: o.readOnly,
            method: 'configure',
            offset: o.offset,
            sizeLimit: o.sizeLimit,
            flags: loFlags(o),
            ...(o.blockSize ? { blockSize: o.blockSize } : {}),
            fileName: loFileName(o.fileName ?? path),
            ...injectedBindErrno(method, attempt),
          },
          spec,
          false,
        ),
      );
    },
    onMountError,
  );
  const built: BuiltMount = {
    target: mountSpec().target ?? '',
    source: r.path,
    fstype: p.fstype,
    flags: p.flags,
    method: api(),
    loopDevice: r.path,
    loopNumber: r.number,
    idmapped,
    messages: r.messages,
    mountFd: r.mountFd,
    mountId: r.mountId ?? 0,
  };
  const bad = r.status ? statusMismatches(r.status, expectationOf(o, r.imageDevice, r.imageInode)) : ['no status'];
  let failure: Error | undefined;
  if (bad.length) failure = verifyError(r.path, bad);
  else if (r.number >= o.maxDevices)
    failure = noFreeLoopDevice(`none below the maximum of ${o.maxDevices} (next free was ${r.path})`, {
      details: { maxDevices: o.maxDevices, next: r.number },
    });
  if (failure) {
    // The loop fd is already closed: undoing the mount auto-clears the device.
    if (r.mountFd !== null) await closeFd(r.mountFd!).catch(() => undefined);
    const placed = mountSpec();
    if (!placed.detached && placed.targetFd !== undefined) await native((b) => b.umountAt(placed.targetFd!, '', 0, placed.target ?? '')).catch(() => undefined);
    throw failure;
  }
  counters.attached++;
  debug('mounted %s (%s) on %s via %s, loop %s', path, p.fstype, built.target || '(detached)', built.method, r.path);
  return built;
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

async function mountPartitionImpl(source: LoopSource | LoopDevice, target: string | PinnedDir, options: MountPartitionOptions): Promise<Mount> {
  // Pinned here: the Mount owns it. Given pinned: the Mount takes it over once mounted.
  const pinned = target instanceof PinnedDir ? target : await pinTarget(str('target', target));
  try {
    const built = await buildMount(source, { target: pinned }, options);
    return new Mount(built, pinned);
  } catch (err) {
    if (!(target instanceof PinnedDir)) await pinned.close();
    throw err;
  }
}
