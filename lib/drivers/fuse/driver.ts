// The built-in FUSE driver ('fuse'): squashfs by squashfuse_ll/squashfuse, ext3 by fuse2fs,
// gocryptfs-squashfs SIF partitions by squashfuse + gocryptfs + squashfuse, overlays by
// fuse-overlayfs. For hosts or users without kernel mounting, and for operators who keep
// untrusted images away from the kernel's filesystem code.
//
// Apptainer's Driver interface (through DriverSession): mount() before start() or after
// stop('') is ERR_DRIVER_STATE, never a hang or a panic. Each mount resolves with a
// MountedFilesystem (mounted.ts) whose close() unmounts, stops the helpers, unmounts internal
// mounts, removes the session directory and the mount record (idempotent).
//
// This file checks the parameters, decides what every plan depends on, and dispatches by
// `params.filesystem` through the FILESYSTEMS table to one entry per filesystem, next to its
// helper's command line (squashfuse.ts, fuse2fs.ts, gocryptfs.ts, overlayfs.ts; plan.ts says
// what a plan is). mount-run.ts records and undoes a mount being built, bring-up.ts serves one
// layer, tear-down.ts releases it.
//
// How a helper gets its mount (bring-up.ts): as root in our own mount namespace, an opened
// /dev/fuse fd passed to helpers that take one (we mount; no privilege goes to the helper);
// otherwise the helper mounts by itself, started inside the given user/mount namespaces where
// asked, and we wait for its mount in that namespace's mountinfo (event-driven, 10 s default).
// Helpers run in their own session and process group with a minimal environment, get the
// image as their fd 3 (/proc/self/fd/3), and outlive this process (see `dieWithOwner`); every
// mount is written to a MountRecord so `imgmount umount TARGET` elsewhere can release it
// (release.ts). No helper has a size limit; see squashfuse.ts and fuse2fs.ts for why the
// partition size still bounds what they read.

import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { ImgmountError, invalidArgType, invalidArgValue, throwIfAborted } from '../../errors';
import { Ext3Feature, GocryptFeature, OverlayFeature, SquashFeature } from '../../image/constants';
import type { MountFunc } from '../../image/driver';
import { signalOf } from '../../util/abort';
import { MS_RDONLY } from '../../mount/flags';
import type { NamespaceRef, NamespaceTarget } from '../../ns/namespace';
import { pinTarget } from '../../path/pinned';
import { encryptionUnsupported } from '../kernel';
import { ownerMark, thisOwner, type MountRecord } from '../mount-record';
import { DriverSession } from '../session';
import type { DriverMountParams, MountedFilesystem } from '../types';
import { checkBinaryOptions, fuseBinaries, locateFuseBinaries, squashfuseOwnerOptions, type FuseBinaries, type FuseBinaryOptions } from './binaries';
import { ext3 } from './fuse2fs';
import { gocryptfs } from './gocryptfs';
import type { StopTimings } from './helper-process';
import { FuseMountRun } from './mount-run';
import { overlay } from './overlayfs';
import type { FuseFilesystem } from './plan';
import { squashfs } from './squashfuse';
import { DEFAULT_MOUNT_TIMEOUT_MS } from './wait-mount';

export interface FuseDriverOptions extends FuseBinaryOptions {
  /**
   * The mount is meant to outlive this process (the CLI's `imgmount mount`): its record names
   * no owner, so cleanup() leaves it alone unless told `all`. Default false.
   */
  persist?: boolean;
  /**
   * Helpers outlive the process that started them, on purpose: a daemon that dies (kill -9, OOM)
   * must not take the filesystems of running containers with it; cleanup() sweeps them once
   * their owner is gone. With dieWithOwner they get SIGTERM when this process dies
   * (PR_SET_PDEATHSIG, set by the namespace helper before the exec) and mounts left at a normal
   * exit are detached. Default false.
   */
  dieWithOwner?: boolean;
  /** How long a helper may take to serve its mount (default 10 s); MountParams.timeoutMs wins. */
  timeoutMs?: number;
  /**
   * Hand helpers an opened /dev/fuse fd when running as root ('auto', default: to the helpers
   * that can take one), or never (false: every helper mounts by itself).
   */
  fdPassing?: 'auto' | false;
  /** Stopping helpers after their unmount (default: 1 s, then SIGTERM, 1 s, then SIGKILL). */
  stop?: StopTimings;
  /** Told about every helper process once it runs (before its mount is confirmed). */
  onHelperStart?: (helper: { program: string; pid: number; target: string }) => void;
}

/** MountParams the FUSE driver also understands. */
export interface FuseMountParams extends DriverMountParams {
  /** Overrides FuseDriverOptions.persist for this mount. */
  persist?: boolean;
  /** Overrides FuseDriverOptions.dieWithOwner for this mount. */
  dieWithOwner?: boolean;
  /**
   * @internal The caller (root()) keeps the record of this target: merge into it, and leave
   * its removal to the caller.
   */
  recordMerge?: boolean;
  /**
   * @internal With recordMerge: the caller's record as it last wrote it, merged into (in place)
   * instead of read back from disk before each write.
   */
  mergeInto?: MountRecord;
  /** squashfs: show every file as owned by uid/gid (squashfuse `-o uid=,gid=`, where supported). */
  owner?: { uid: number; gid: number };
}

/** What the driver mounts, by `params.filesystem`: each entry runs its helpers' plans. */
const FILESYSTEMS: Readonly<Record<string, FuseFilesystem>> = { squashfs, ext3, gocryptfs, overlay };

const euid = (): number => process.geteuid?.() ?? -1;

let fuseConfAllowOther: Promise<boolean> | undefined;
/** /etc/fuse.conf's user_allow_other, which fusermount3 needs for allow_other from a user. */
function userAllowOther(): Promise<boolean> {
  fuseConfAllowOther ??= fsp.readFile('/etc/fuse.conf', 'utf8').then(
    (t) => /^\s*user_allow_other\s*$/m.test(t),
    () => false,
  );
  return fuseConfAllowOther;
}

let fuseDeviceSeen = false;
/** Whether /dev/fuse exists (once seen, not asked again: a device node does not come and go). */
async function fuseDevice(): Promise<boolean> {
  if (!fuseDeviceSeen) fuseDeviceSeen = await fsp.access('/dev/fuse').then(() => true, () => false);
  return fuseDeviceSeen;
}

function checkParams(p: FuseMountParams): void {
  if (typeof p !== 'object' || p === null) throw invalidArgType('params', 'an object', p);
  if (typeof p.target !== 'string' || !path.isAbsolute(p.target) || p.target.includes('\0'))
    throw invalidArgValue('params.target', p.target, 'must be an absolute path');
  if (typeof p.source !== 'string') throw invalidArgType('params.source', 'a string', p.source);
  if (!Number.isSafeInteger(p.offset) || p.offset < 0) throw invalidArgValue('params.offset', p.offset, 'must be a non-negative integer');
  if (!Number.isInteger(p.flags) || p.flags < 0) throw invalidArgValue('params.flags', p.flags, 'must be mount(2) flags');
  if (!Array.isArray(p.fsOptions)) throw invalidArgType('params.fsOptions', 'an array of strings', p.fsOptions);
  if (p.timeoutMs !== undefined && (!Number.isSafeInteger(p.timeoutMs) || p.timeoutMs <= 0))
    throw invalidArgValue('params.timeoutMs', p.timeoutMs, 'must be a positive integer (milliseconds)');
  if (p.owner !== undefined && (!Number.isInteger(p.owner?.uid) || !Number.isInteger(p.owner?.gid) || p.owner.uid < 0 || p.owner.gid < 0))
    throw invalidArgValue('params.owner', p.owner, 'must be { uid, gid } with non-negative integers');
  signalOf(p.signal);
}

export class FuseDriver extends DriverSession {
  readonly name = 'fuse' as const;
  readonly #options: FuseDriverOptions;

  constructor(options: FuseDriverOptions = {}) {
    super();
    if (typeof options !== 'object' || options === null) throw invalidArgType('options', 'an object', options);
    if (options.timeoutMs !== undefined && (!Number.isSafeInteger(options.timeoutMs) || options.timeoutMs <= 0))
      throw invalidArgValue('options.timeoutMs', options.timeoutMs, 'must be a positive integer (milliseconds)');
    if (options.fdPassing !== undefined && options.fdPassing !== 'auto' && options.fdPassing !== false)
      throw invalidArgValue('options.fdPassing', options.fdPassing, "must be 'auto' or false");
    this.#options = { ...options };
    // Fail early on a malformed binary configuration (it is looked up lazily; the
    // environment's IMGMOUNT_FUSE_PATH is checked then, not at construction).
    checkBinaryOptions(this.#binaryOptions());
  }

  #binaryOptions(): FuseBinaryOptions {
    return {
      ...(this.#options.binaryPath !== undefined ? { binaryPath: this.#options.binaryPath } : {}),
      ...(this.#options.programs !== undefined ? { programs: this.#options.programs } : {}),
    };
  }

  /** The programs this driver would run. */
  binaries(): Promise<FuseBinaries> {
    return fuseBinaries(this.#binaryOptions());
  }

  /** Squash, Ext3, Gocrypt (gocryptfs and squashfuse) and Overlay, as their programs are installed. */
  features(): number {
    const b = locateFuseBinaries(this.#binaryOptions());
    return (
      (b.squashfuse ? SquashFeature : 0) |
      (b.fuse2fs ? Ext3Feature : 0) |
      (b.gocryptfs && b.squashfuse ? GocryptFeature : 0) |
      (b.fuseOverlayfs ? OverlayFeature : 0)
    );
  }

  /** Where helpers run: the mount's namespaces, else the session's user namespace, else ours. */
  #namespace(p: FuseMountParams): NamespaceTarget | undefined {
    if (p.namespace) return p.namespace;
    const ref = this.params.config?.userns as NamespaceRef | undefined | null;
    if (ref !== undefined && ref !== null) return { userns: ref };
    if (Number.isInteger(this.params.usernsFd) && this.params.usernsFd >= 0) return { userns: this.params.usernsFd };
    return undefined;
  }

  protected async doMount(params: DriverMountParams, mountFunc: MountFunc): Promise<MountedFilesystem> {
    const p = params as FuseMountParams;
    checkParams(p);
    if (p.filesystem === 'encryptfs') throw encryptionUnsupported(p.target);
    const filesystem = Object.hasOwn(FILESYSTEMS, p.filesystem) ? FILESYSTEMS[p.filesystem] : undefined;
    if (!filesystem)
      throw new ImgmountError('ERR_MOUNT_UNSUPPORTED_FS', `the FUSE driver does not mount "${p.filesystem}" (it mounts ${Object.keys(FILESYSTEMS).join(', ')})`);
    throwIfAborted(p.signal);
    const bins = await this.binaries();
    if (!(await fuseDevice()))
      throw new ImgmountError('ERR_FUSE_UNAVAILABLE', 'the kernel has no FUSE device (/dev/fuse is missing): load the fuse module, or use the kernel driver');
    if (p.owner && !filesystem.takesOwner) throw invalidArgValue('params.owner', p.owner, 'applies to squashfs mounts only');
    if (p.owner && bins.squashfuse && !(await squashfuseOwnerOptions(bins.squashfuse)))
      throw new ImgmountError('ERR_FUSE_UNAVAILABLE', `${bins.squashfuse} does not take -o uid=,gid= (params.owner): use plain squashfuse (programs.squashfuse) or a newer squashfuse_ll`);
    const namespace = this.#namespace(p);
    const persist = p.persist ?? this.#options.persist ?? false;
    const dieWithOwner = p.dieWithOwner ?? this.#options.dieWithOwner ?? false;
    const owner = persist ? undefined : await thisOwner();
    const timeoutMs = p.timeoutMs ?? this.#options.timeoutMs ?? DEFAULT_MOUNT_TIMEOUT_MS;
    const allowOtherHere = euid() === 0 || (await userAllowOther());
    const readOnly = filesystem.alwaysReadOnly || (p.flags & MS_RDONLY) !== 0;
    const mark = owner ? await ownerMark(owner) : undefined;
    // Where the mount goes: onto the pinned target here, or (as root) served here and moved
    // into another mount namespace. A helper never runs in another mount namespace.
    const moveInto = namespace && ('pid' in namespace || namespace.mntns != null) ? namespace : undefined;
    const userns = namespace && !moveInto ? namespace : undefined;
    if (moveInto && euid() !== 0)
      throw new ImgmountError(
        'ERR_NAMESPACE',
        'FUSE mounts into another mount namespace need root: imgmount serves them from its own namespace and moves them in, ' +
          "and will not run a helper from that namespace's filesystem",
      );
    const pinned = moveInto ? undefined : (p.pinned ?? (await pinTarget(p.target)));
    const run = new FuseMountRun({
      params: p,
      mountFunc,
      bins,
      readOnly,
      persist,
      dieWithOwner,
      ...(owner ? { owner } : {}),
      ...(mark !== undefined ? { ownerMark: mark } : {}),
      timeoutMs,
      allowOtherHere,
      fdPassing: this.#options.fdPassing ?? 'auto',
      ...(this.#options.stop ? { stop: this.#options.stop } : {}),
      ...(this.#options.onHelperStart ? { onHelperStart: this.#options.onHelperStart } : {}),
      ...(moveInto ? { moveInto } : {}),
      ...(userns ? { userns } : {}),
      ...(pinned ? { pinned } : {}),
      ownsPin: pinned !== undefined && p.pinned === undefined,
      internalMounts: filesystem.internalMounts,
    });
    try {
      await run.begin();
      await filesystem.mount(run);
      return await run.finish();
    } catch (err) {
      // Undo whatever was built, in reverse; the original error is what the caller sees.
      await run.undo();
      throw err;
    } finally {
      await run.closeFds();
    }
  }
}
