// Apptainer's MountFunc: mount(source, target, fstype, flags, data) and umount(target, flags)
// with numeric or named flags, through the new mount API where it can (mount(2) where it is
// missing or filtered, and for bind, move, remount and propagation changes), plus the detached
// mount lib/mount builds for other namespaces. Nothing is defaulted here: image partitions get
// their safe defaults from mountPartition() (./partition.ts); the Mount handle is ./handle.ts.

import { closeFd } from '../io/fd';
import * as nodePath from 'node:path';
import { constants as fsConstants } from 'node:fs';
import { ImgmountError, invalidArgType, throwIfAborted } from '../errors';
import { O_PATH, PinnedDir, pinTarget, umountPinned } from '../path/pinned';
import { systemTargetReason } from '../path/system-targets';
import { checkpoint } from '../util/checkpoint';
import { signalOf, sleep } from '../util/abort';
import { choice } from '../util/args';
import { backoffMs } from '../util/backoff';
import { debug } from '../util/debug';
import { api } from '../util/stack';
import { isSystemError } from '../util/system-error';
import { native } from '../native/binding';
import { mapMountError } from './errors';
import {
  MS_BIND,
  MS_MOVE,
  MS_PRIVATE,
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

/** A non-empty string argument without NUL. */
export function str(name: string, v: unknown): string {
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
export async function withBusyRetries(attempt: () => Promise<unknown>, retries: number, signal?: AbortSignal): Promise<void> {
  for (let i = 0; ; i++) {
    throwIfAborted(signal);
    try {
      await attempt();
      return;
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

/** umount() for callers inside the library (see mountPartitionImpl in ./partition.ts). */
export async function umountImpl(target: string | PinnedDir, flags?: UmountFlags, options: UmountOptions = {}): Promise<void> {
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

/**
 * Unmounts through a pinned mount point and closes it once the mount is gone (or was gone
 * already: ERR_NOT_MOUNTED, and later calls say so without touching the closed fd).
 */
export async function unmountPinnedOnce(pinned: PinnedDir, flags: number, options: UmountOptions = {}): Promise<void> {
  if (pinned.closed) throw notMounted(pinned.path, undefined);
  try {
    await umountImpl(pinned, flags, { ...options, releasePinned: true });
  } catch (err) {
    if (isSystemError(err) || !(err instanceof ImgmountError) || err.code !== 'ERR_NOT_MOUNTED') throw err;
    await pinned.close();
    throw err;
  }
  await pinned.close();
}
