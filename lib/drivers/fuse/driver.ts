// The built-in FUSE driver ('fuse'): squashfs by squashfuse_ll/squashfuse, ext3 by fuse2fs,
// gocryptfs-squashfs SIF partitions by squashfuse + gocryptfs + squashfuse, overlays by
// fuse-overlayfs. For hosts or users without kernel mounting, and for operators who keep
// untrusted images away from the kernel's filesystem code.
//
// The seed's Driver interface (through DriverSession): mount() before start() or after
// stop('') is ERR_DRIVER_STATE, never a hang or a panic. Each mount resolves with a
// MountedFilesystem whose close() unmounts, stops the helpers, unmounts internal mounts,
// removes the session directory and the mount record (idempotent).
//
// How a helper gets its mount (serve.ts): as root in our own mount namespace, an opened
// /dev/fuse fd passed to helpers that take one (we mount; no privilege goes to the helper);
// otherwise the helper mounts by itself, started inside the given user/mount namespaces where
// asked, and we wait for its mount in that namespace's mountinfo (event-driven, 10 s default).
// Helpers run in their own session and process group with a minimal environment, get the
// image as their fd 3 (/proc/self/fd/3), and outlive this process (see `dieWithOwner`); every
// mount is written to a MountRecord so `imgmount umount TARGET` elsewhere can release it
// (release.ts). No helper has a size limit; see squashfuse.ts and fuse2fs.ts for why the
// partition size still bounds what they read.

import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { ImgmountError, fromNodeError, invalidArgType, invalidArgValue, throwIfAborted } from '../../errors';
import { Ext3Feature, GocryptFeature, OverlayFeature, SquashFeature } from '../../image/constants';
import type { MountFunc } from '../../image/driver';
import { signalOf } from '../../util/abort';
import { debug } from '../../util/debug';
import { MNT_DETACH, MS_NOEXEC, MS_RDONLY } from '../../mount/flags';
import { binding } from '../../native/binding';
import type { NamespaceRef, NamespaceTarget } from '../../ns/namespace';
import { encryptionUnsupported } from '../kernel';
import { currentMountNamespace, entryProcess, findMountRecord, ownerMark, saveMountRecord, sessionsDir, removeMountRecord, thisOwner } from '../mount-record';
import { openFileBeneath, pinOwnDir, pinTarget, umountPinnedSync } from '../../path/pinned';
import { pathContains } from '../../image/authorize';
import { mountNamespaceInode } from '../../ns/namespace';
import { DriverSession } from '../session';
import { sourceFd } from '../source';
import type { DriverMountParams, MountedFilesystem } from '../types';
import { checkBinaryOptions, fuseBinaries, locateFuseBinaries, missingProgram, squashfuseOwnerOptions, type FuseBinaries, type FuseBinaryOptions } from './binaries';
import { checkPartitionBounds } from './bounds';
import { fuse2fsArgs } from './fuse2fs';
import { GOCRYPTFS_EXIT_PASSWORD_INCORRECT, findInnerSquashfs, gocryptfsArgs, gocryptfsInput } from './gocryptfs';
import type { HelperProcess, StopTimings } from './helper-process';
import { overlayArgs, overlayOptions } from './overlayfs';
import { removeSessionDir } from '../mount-record';
import { removeMountRecordSync, type FuseMountRecord } from './release';
import { closeFd } from '../../io/fd';
import { releaseLayer, serve, type Layer, type ServeContext, type Step } from './serve';
import { squashfuseArgs } from './squashfuse';
import { DEFAULT_MOUNT_TIMEOUT_MS } from './wait-mount';
import { uniqueSuffix } from '../../util/unique';

const openAsync = promisify(fs.open);

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
  /** squashfs: show every file as owned by uid/gid (squashfuse `-o uid=,gid=`, where supported). */
  owner?: { uid: number; gid: number };
}

const FILESYSTEMS = ['squashfs', 'ext3', 'gocryptfs', 'overlay'] as const;

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

// ---------------------------------------------------------------------------------------
// Mounts whose helpers must not outlive this process (dieWithOwner): if it exits with them
// still mounted (close() never called), detach the mounts and SIGTERM the helpers,
// synchronously. (A kill -9 skips this; PR_SET_PDEATHSIG still ends the helpers.)

const live = new Set<FuseMounted>();
let exitHooked = false;

function trackUntilClosed(m: FuseMounted): void {
  live.add(m);
  if (!exitHooked) {
    exitHooked = true;
    process.once('exit', () => {
      for (const mounted of live) mounted.releaseAtExit();
    });
  }
}

class FuseMounted implements MountedFilesystem {
  readonly driver = 'fuse' as const;
  readonly loopDevice = null;
  readonly target: string;
  readonly fstype: string;
  readonly readOnly: boolean;
  readonly #layers: Layer[];
  readonly #sessionDir: string | undefined;
  /** The record this mount removes once released (not one a caller owns: recordMerge). */
  readonly #record: { target: string; mntns: string } | undefined;
  readonly #ctx: Pick<ServeContext, 'fusermount'>;
  readonly #timings: (layer: Layer) => StopTimings;
  #closeCalled = false;
  #closing: Promise<void> | undefined;

  constructor(init: {
    target: string;
    readOnly: boolean;
    layers: Layer[];
    sessionDir: string | undefined;
    record: { target: string; mntns: string } | undefined;
    ctx: Pick<ServeContext, 'fusermount'>;
    timings: (layer: Layer) => StopTimings;
  }) {
    this.target = init.target;
    this.readOnly = init.readOnly;
    this.#layers = init.layers;
    this.fstype = init.layers[init.layers.length - 1]!.fstype;
    this.#sessionDir = init.sessionDir;
    this.#record = init.record;
    this.#ctx = init.ctx;
    this.#timings = init.timings;
  }

  get helpers(): ReadonlyArray<{ program: string; pid: number }> {
    return this.#layers.map((l) => ({ program: l.helper.name, pid: l.helper.pid }));
  }

  get closed(): boolean {
    return this.#closeCalled;
  }

  close(): Promise<void> {
    this.#closeCalled = true;
    if (!this.#closing) {
      const p = this.#release();
      this.#closing = p;
      // A failed release may be retried (each step is idempotent).
      p.catch(() => {
        if (this.#closing === p) this.#closing = undefined;
      });
    }
    return this.#closing;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  async #release(): Promise<void> {
    live.delete(this);
    const errors = await releaseLayers(this.#layers, this.#ctx, this.#timings);
    if (this.#sessionDir) await removeSessionDir(this.#sessionDir).catch((e: unknown) => errors.push(e));
    if (errors.length === 0 && this.#record) await removeMountRecord(this.#record.target, this.#record.mntns).catch((e: unknown) => errors.push(e));
    if (errors.length === 1) throw errors[0];
    if (errors.length > 1) throw new AggregateError(errors, `releasing the FUSE mount at ${this.target}: ${errors.length} step(s) failed`);
  }

  /** Process exit without close(): detach our mounts, SIGTERM the helpers (synchronous). */
  releaseAtExit(): void {
    for (const layer of [...this.#layers].reverse()) {
      if (!layer.namespace && euid() === 0) {
        try {
          if (layer.pinned) umountPinnedSync(layer.pinned, MNT_DETACH);
          else binding().umount(layer.target, MNT_DETACH, true);
        } catch {
          // not mounted any more
        }
      }
      layer.helper.kill('SIGTERM');
    }
    if (this.#sessionDir) {
      try {
        // Detached above, so its mount points are plain empty directories again.
        for (const e of fs.readdirSync(this.#sessionDir, { withFileTypes: true })) {
          const p = path.join(this.#sessionDir, e.name);
          if (e.isDirectory()) fs.rmdirSync(p);
          else fs.unlinkSync(p);
        }
        fs.rmdirSync(this.#sessionDir);
      } catch {
        // best effort at exit
      }
    }
    if (this.#record) removeMountRecordSync(this.#record.target, this.#record.mntns);
  }
}

async function releaseLayers(layers: readonly Layer[], ctx: Pick<ServeContext, 'fusermount'>, timings: (l: Layer) => StopTimings): Promise<unknown[]> {
  const errors: unknown[] = [];
  for (const layer of [...layers].reverse()) errors.push(...(await releaseLayer(layer, ctx, timings(layer))));
  return errors;
}

// ---------------------------------------------------------------------------------------

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
    if (!(FILESYSTEMS as readonly string[]).includes(p.filesystem))
      throw new ImgmountError('ERR_MOUNT_UNSUPPORTED_FS', `the FUSE driver does not mount "${p.filesystem}" (it mounts ${FILESYSTEMS.join(', ')})`);
    throwIfAborted(p.signal);
    const bins = await this.binaries();
    if (!(await fsp.access('/dev/fuse').then(() => true, () => false)))
      throw new ImgmountError('ERR_FUSE_UNAVAILABLE', 'the kernel has no FUSE device (/dev/fuse is missing): load the fuse module, or use the kernel driver');
    if (p.owner && p.filesystem !== 'squashfs') throw invalidArgValue('params.owner', p.owner, 'applies to squashfs mounts only');
    if (p.owner && bins.squashfuse && !(await squashfuseOwnerOptions(bins.squashfuse)))
      throw new ImgmountError('ERR_FUSE_UNAVAILABLE', `${bins.squashfuse} does not take -o uid=,gid= (params.owner): use plain squashfuse (programs.squashfuse) or a newer squashfuse_ll`);
    const namespace = this.#namespace(p);
    const persist = p.persist ?? this.#options.persist ?? false;
    const dieWithOwner = p.dieWithOwner ?? this.#options.dieWithOwner ?? false;
    const owner = persist ? undefined : await thisOwner();
    const timeoutMs = p.timeoutMs ?? this.#options.timeoutMs ?? DEFAULT_MOUNT_TIMEOUT_MS;
    const allowOtherHere = euid() === 0 || (await userAllowOther());
    const readOnly = p.filesystem === 'squashfs' || p.filesystem === 'gocryptfs' || (p.flags & MS_RDONLY) !== 0;
    const ctx: ServeContext = {
      mountFunc,
      fusermount: bins.fusermount3,
      ...(owner ? { ownerMark: await ownerMark(owner) } : {}),
      dieWithOwner,
      onStart: async (helper: HelperProcess, step: Step) => {
        // Helpers never keep this process alive: the handle, the record (cleanup()) or, with
        // dieWithOwner, the exit hook is what releases them. Recorded before anything waits on it.
        helper.detach();
        record.helpers.push({ program: helper.name, pid: helper.pid, startTime: helper.startTime ?? '0', ...(helper.exe !== null ? { exe: helper.exe } : {}) });
        await saveRecord();
        try {
          this.#options.onHelperStart?.({ program: helper.name, pid: helper.pid, target: step.target });
        } catch (e) {
          debug('fuse: onHelperStart threw: %s', (e as Error).message);
        }
      },
    };
    const layers: Layer[] = [];
    const fds: number[] = [];
    let sessionDir: string | undefined;
    let pinTaken = false;
    const record: FuseMountRecord = { target: p.target, mntns: '', driver: 'fuse', fstype: `fuse.${p.filesystem}`, helpers: [], internalMounts: [], persist, created: new Date().toISOString() };
    let recorded = false;
    // The record as it stands, or merged into the caller's (root()'s) record of the same target.
    const saveRecord = async (): Promise<void> => {
      let out: FuseMountRecord = record;
      if (p.recordMerge) {
        const prior = (await findMountRecord(record.target, record.mntns).catch(() => undefined)) as FuseMountRecord | undefined;
        if (prior) {
          out = {
            ...prior,
            driver: 'fuse',
            fstype: record.fstype,
            helpers: [...prior.helpers.filter((h) => !record.helpers.some((x) => x.pid === h.pid)), ...record.helpers],
            // Entries under our own session directory are ours to state; the caller's stay.
            internalMounts: [...record.internalMounts, ...prior.internalMounts.filter((m) => !(record.sessionDir && pathContains(record.sessionDir, m)) && !record.internalMounts.includes(m))],
            moreSessionDirs: [...new Set([...(prior.moreSessionDirs ?? []), ...(record.sessionDir ? [record.sessionDir] : [])])].filter((d) => d !== prior.sessionDir),
          };
        }
      }
      await saveMountRecord(out);
      recorded = true;
    };
    const timings = (layer: Layer): StopTimings => {
      const t = { ...this.#options.stop };
      // A writable fuse2fs writes back on its way out: give it the mount timeout, not 1 s.
      if (!layer.readOnly) t.graceMs = Math.max(t.graceMs ?? 1000, timeoutMs);
      return t;
    };
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
    const ownsPin = pinned !== undefined && p.pinned === undefined;
    try {
      const target = moveInto ? path.resolve(p.target) : pinned!.path;
      const staged = euid() === 0 && !userns; // self-mounting helpers mount on our staging directory first
      // Helpers that outlive us write to log files there (a pipe breaks when we exit).
      // Named now, made once the record names it (a kill in between leaves nothing unrecorded).
      if (!dieWithOwner || p.filesystem === 'gocryptfs' || staged) sessionDir = await this.#sessionDirName();
      const logFile = (n: string): string | undefined => (!dieWithOwner ? path.join(sessionDir!, `${layers.length}-${n}.log`) : undefined);
      // Intent first: the record names the session directory and every mount point before a
      // helper starts, and each helper as soon as it runs (see saveRecord).
      const here = await currentMountNamespace();
      const enter = moveInto ? await entryProcess(moveInto) : undefined;
      record.target = target;
      record.mntns = moveInto ? await mountNamespaceInode(moveInto) : here;
      record.internalMounts = sessionDir ? ['plain', 'cipher', 'stage-2', 'stage-1', 'stage-0'].map((n) => path.join(sessionDir!, n)) : [];
      if (sessionDir) record.sessionDir = sessionDir;
      if (moveInto) record.internalMntns = here;
      if (enter) record.enter = enter;
      if (owner) record.owner = owner;
      await saveRecord();
      if (sessionDir) await fsp.mkdir(sessionDir, { mode: 0o700 });
      // A step whose mount is the final one (at the target) or an internal one (a session path).
      const base = (program: string, internal: string | null): Omit<Step, 'argv'> => {
        // A helper asked to run in a user namespace mounts by itself from inside it.
        const fdPassing = euid() === 0 && !(userns && internal === null) && this.#options.fdPassing !== false && bins.fdPassing[program] === true;
        const lf = logFile(path.basename(program));
        const step: Omit<Step, 'argv'> = {
          program,
          target: internal ?? target,
          readOnly,
          allowOther: internal === null && (moveInto !== undefined || userns !== undefined || allowOtherHere),
          noexec: (p.flags & MS_NOEXEC) !== 0,
          fdPassing,
          timeoutMs,
          ...(lf !== undefined ? { logFile: lf } : {}),
          ...(p.signal ? { signal: p.signal } : {}),
        };
        if (internal === null) {
          if (pinned) step.pinned = pinned;
          if (moveInto) step.moveInto = moveInto;
          if (userns) step.userns = userns;
        }
        if (!fdPassing && staged && internal === null) step.staging = path.join(sessionDir!, `stage-${layers.length}`);
        return step;
      };
      const squashfuse = (srcFd: number, offset: number, internal: string | null): Step => {
        if (!bins.squashfuse) throw missingProgram('squashfuse', 'mount squashfs', bins.searched);
        const b = base(bins.squashfuse, internal);
        return {
          ...b,
          sourceFd: srcFd,
          argv: (src, mp) =>
            squashfuseArgs({ offset, allowOther: b.allowOther, selfMount: !b.fdPassing, ...(p.owner && internal === null ? { owner: p.owner } : {}) }, src!, mp),
        };
      };
      const serveStep = async (step: Step): Promise<void> => {
        if (step.staging) await fsp.mkdir(step.staging, { mode: 0o700 });
        const layer = await serve(step, ctx);
        layers.push(layer);
        // The final layer owns the pinned target from now on.
        if (layer.pinned === pinned) pinTaken = true;
      };

      switch (p.filesystem) {
        case 'squashfs': {
          const src = await openSource(p.source, false, fds);
          await checkPartitionBounds(src, 'squashfs', p.offset, p.size, await imageName(p.source));
          await serveStep(squashfuse(src, p.offset, null));
          break;
        }
        case 'ext3': {
          if (!bins.fuse2fs) throw missingProgram('fuse2fs', 'mount ext3', bins.searched);
          const src = await openSource(p.source, !readOnly, fds);
          await checkPartitionBounds(src, 'ext3', p.offset, p.size, await imageName(p.source));
          const b = base(bins.fuse2fs, null);
          const fakeroot = euid() !== 0 && !userns;
          await serveStep({ ...b, sourceFd: src, argv: (s, mp) => fuse2fsArgs({ offset: p.offset, readOnly, allowOther: b.allowOther, fakeroot }, s!, mp) });
          break;
        }
        case 'overlay': {
          if (!bins.fuseOverlayfs) throw missingProgram('fuse-overlayfs', 'mount overlays', bins.searched);
          // Layers given as pinned fds (/proc/self/fd/N) become the helper's own fds 3, 4, ...
          const layerFds = handOverLayers(overlayOptions(p.fsOptions));
          const ro = readOnly || !layerFds.options.some((o) => o.startsWith('upperdir='));
          const b = { ...base(bins.fuseOverlayfs, null), readOnly: ro, extraFds: layerFds.fds };
          await serveStep({ ...b, argv: (_s, mp) => overlayArgs({ readOnly: ro, allowOther: b.allowOther }, layerFds.options, mp) });
          break;
        }
        case 'gocryptfs': {
          if (!bins.gocryptfs) throw missingProgram('gocryptfs', 'mount gocryptfs partitions', bins.searched);
          if (!bins.squashfuse) throw missingProgram('squashfuse', 'mount gocryptfs partitions', bins.searched);
          const input = gocryptfsInput(p.key);
          const cipher = path.join(sessionDir!, 'cipher');
          const plain = path.join(sessionDir!, 'plain');
          await fsp.mkdir(cipher, { mode: 0o700 });
          await fsp.mkdir(plain, { mode: 0o700 });
          // The chain's inner mounts live in our session directory; only the last one goes where asked.
          const src = await openSource(p.source, false, fds);
          await checkPartitionBounds(src, 'squashfs', p.offset, p.size, await imageName(p.source));
          await serveStep(squashfuse(src, p.offset, cipher));
          const inner = await findInnerSquashfs(cipher, await imageName(p.source));
          throwIfAborted(p.signal);
          const g = base(bins.gocryptfs, plain);
          try {
            await serveStep({ ...g, input, argv: (_s, mp) => gocryptfsArgs({ allowOther: false }, cipher, mp) });
          } catch (err) {
            const e = err as ImgmountError;
            if (e.code === 'ERR_HELPER_FAILED' && e.details?.code === GOCRYPTFS_EXIT_PASSWORD_INCORRECT)
              throw new ImgmountError('ERR_KEY_REJECTED', `gocryptfs rejected the key for the gocryptfs partition of ${await imageName(p.source)}: ${String(e.details?.output ?? '') || 'password incorrect'}`, {
                cause: err,
                details: { program: 'gocryptfs', code: GOCRYPTFS_EXIT_PASSWORD_INCORRECT },
              });
            throw err;
          }
          // The decrypted image is a file inside the encrypted filesystem: opened there without
          // following any symlink (one could point at a host file).
          const plainRoot = await pinOwnDir(plain);
          try {
            fds.push(await openFileBeneath(plainRoot, inner));
          } finally {
            await plainRoot.close();
          }
          await serveStep(squashfuse(fds[fds.length - 1]!, 0, null));
          break;
        }
      }
      throwIfAborted(p.signal);
      const final = layers[layers.length - 1]!;
      record.fstype = final.fstype;
      record.internalMounts = layers.slice(0, -1).map((l) => l.target).reverse();
      await saveRecord();
      const mounted = new FuseMounted({
        target: final.target,
        readOnly: final.readOnly,
        layers,
        sessionDir,
        record: p.recordMerge ? undefined : { target: record.target, mntns: record.mntns },
        ctx,
        timings,
      });
      if (dieWithOwner) trackUntilClosed(mounted);
      debug('fuse: %s at %s served by %s', p.filesystem, final.target, mounted.helpers.map((h) => `${h.program}[${h.pid}]`).join(' <- '));
      return mounted;
    } catch (err) {
      // Undo whatever was built, in reverse; the original error is what the caller sees.
      const undo = await releaseLayers(layers, ctx, timings);
      if (sessionDir) await removeSessionDir(sessionDir).catch((e: unknown) => undo.push(e));
      if (recorded && !p.recordMerge && undo.length === 0) await removeMountRecord(record.target, record.mntns).catch((e: unknown) => undo.push(e));
      for (const e of undo) debug('fuse: undoing a failed mount: %s', (e as Error).message);
      if (ownsPin && !pinTaken) await pinned!.close();
      throw err;
    } finally {
      for (const fd of fds) await closeFd(fd).catch(() => undefined); // the helper has its own copy
    }
  }

  /**
   * A private directory for internal mounts and logs, directly under `<state dir>/sessions`
   * (checked there): the only place a mount record may name. DriverParams.sessionPath is not
   * used for it, since a record naming a directory elsewhere would be refused.
   */
  /** A new session directory's path (made after the record names it; mkdir's EEXIST guards a clash). */
  async #sessionDirName(): Promise<string> {
    return path.join(await sessionsDir(), `fuse-${uniqueSuffix()}`);
  }
}


/** The image as an fd for the helper: `/proc/self/fd/N` is used as is, a path is opened (and closed later). */
async function openSource(source: string, writable: boolean, owned: number[]): Promise<number> {
  const n = sourceFd(source);
  if (n !== undefined) return n;
  try {
    const fd = await openAsync(source, writable ? fs.constants.O_RDWR : fs.constants.O_RDONLY);
    owned.push(fd);
    return fd;
  } catch (err) {
    throw fromNodeError(err, `opening ${source} for the FUSE helper`);
  }
}

async function imageName(source: string): Promise<string> {
  if (sourceFd(source) === undefined) return source;
  return fsp.readlink(source).catch(() => source);
}

/**
 * fuse-overlayfs runs as another process, where our /proc/self/fd/N layer paths mean nothing:
 * those fds are handed to it (at 3, 4, ... in order of appearance) and the options rewritten.
 */
export function handOverLayers(options: readonly string[]): { options: string[]; fds: number[] } {
  const fds: number[] = [];
  const childFd = (fd: number): number => {
    let i = fds.indexOf(fd);
    if (i < 0) i = fds.push(fd) - 1;
    return 3 + i;
  };
  const rewritten = options.map((o) => o.replace(/\/proc\/self\/fd\/(\d+)(?=$|[:,])/g, (_m, n: string) => `/proc/self/fd/${childFd(Number(n))}`));
  return { options: rewritten, fds };
}
