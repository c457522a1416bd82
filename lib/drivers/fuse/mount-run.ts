// One FUSE mount being built: its mount record (intent first: the record names the session
// directory and every mount point before a helper starts, and each helper as soon as it runs),
// the layers served so far, the fds opened for helpers, and the undo of all of it when a step
// fails. A filesystem's procedure (plan.ts, FuseFilesystem.mount) drives it through MountRun.

import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { fromNodeError, hasErrorCode, throwIfAborted } from '../../errors';
import type { MountFunc } from '../../image/driver';
import { pathContains } from '../../image/authorize';
import { closeFd, openFd } from '../../io/fd';
import { debug } from '../../util/debug';
import type { NamespaceTarget } from '../../ns/namespace';
import { mountNamespaceInode } from '../../ns/namespace';
import { openFileBeneath, pinOwnDir, type PinnedDir } from '../../path/pinned';
import { uniqueSuffix } from '../../util/unique';
import { currentMountNamespace, entryProcess, findMountRecord, removeMountRecord, removeSessionDir, saveMountRecord, sessionsDir, type MountRecord, type RecordOwner } from '../mount-record';
import { sourceFd } from '../source';
import type { DriverMountParams } from '../types';
import type { FuseBinaries } from './binaries';
import { serve } from './bring-up';
import { checkPartitionBounds } from './bounds';
import type { HelperProcess, StopTimings } from './helper-process';
import type { Layer, ServeContext } from './layer';
import { FuseMounted, trackUntilClosed } from './mounted';
import type { MountRun, PlanInput, Step } from './plan';
import type { FuseMountRecord } from './release';
import { layerStopTimings, releaseLayers } from './tear-down';

/** Mount points a session directory may hold (named in the record before they exist). */
const SESSION_MOUNT_POINTS = ['plain', 'cipher', 'stage-2', 'stage-1', 'stage-0'];

export interface FuseMountRunInit {
  params: DriverMountParams & { recordMerge?: boolean; mergeInto?: MountRecord; owner?: { uid: number; gid: number } };
  mountFunc: MountFunc;
  bins: FuseBinaries;
  readOnly: boolean;
  persist: boolean;
  dieWithOwner: boolean;
  /** The record's owner (none for a persistent mount) and its mark in helpers' environment. */
  owner?: RecordOwner;
  ownerMark?: string;
  timeoutMs: number;
  allowOtherHere: boolean;
  fdPassing: 'auto' | false;
  stop?: StopTimings;
  onHelperStart?: (helper: { program: string; pid: number; target: string }) => void;
  moveInto?: NamespaceTarget;
  userns?: NamespaceTarget;
  /** The pinned target (none when the mount is moved into another namespace). */
  pinned?: PinnedDir;
  /** We pinned it (not the caller): closed on failure unless a layer took it over. */
  ownsPin: boolean;
  /** The filesystem mounts helpers inside the session directory (a chain). */
  internalMounts: boolean;
}

export class FuseMountRun implements MountRun {
  readonly #init: FuseMountRunInit;
  readonly #layers: Layer[] = [];
  /** Fds we opened for helpers (each has its own copy): closed when the run ends. */
  readonly #fds: number[] = [];
  readonly #record: FuseMountRecord;
  readonly #ctx: ServeContext;
  #recorded = false;
  /** The caller's record we merge into (recordMerge): given, or read once. */
  #prior: MountRecord | undefined;
  /** What was last written (a write that would say nothing new is skipped). */
  #written: string | undefined;
  #pinTaken = false;
  /** The session directory's name (chosen in begin()), and the directory once made. */
  #sessionName: string | undefined;
  #sessionDir: string | undefined;
  #target = '';

  constructor(init: FuseMountRunInit) {
    this.#init = init;
    const p = init.params;
    this.#prior = p.recordMerge ? p.mergeInto : undefined;
    this.#record = { target: p.target, mntns: '', driver: 'fuse', fstype: `fuse.${p.filesystem}`, helpers: [], internalMounts: [], persist: init.persist, created: new Date().toISOString() };
    this.#ctx = {
      mountFunc: init.mountFunc,
      fusermount: init.bins.fusermount3,
      ...(init.ownerMark ? { ownerMark: init.ownerMark } : {}),
      dieWithOwner: init.dieWithOwner,
      onStart: async (helper: HelperProcess, step: Step) => {
        // Helpers never keep this process alive: the handle, the record (cleanup()) or, with
        // dieWithOwner, the exit hook is what releases them. Recorded before anything waits on it.
        helper.detach();
        this.#record.helpers.push({ program: helper.name, pid: helper.pid, startTime: helper.startTime ?? '0', ...(helper.exe !== null ? { exe: helper.exe } : {}) });
        if (step.fdPassing && step.staging === undefined && step.target === this.#target) {
          // The final layer, mounted already (we mounted it for the helper): nothing more will
          // be mounted, so this write says what finish() would, and finish() has nothing to add.
          this.#record.fstype = `fuse.${helper.name}`;
          this.#record.internalMounts = this.#layers.map((l) => l.target).reverse();
        }
        // Told before the write (synchronously, when this is called): bring-up waits for the
        // mount to serve only after that, while the record is written.
        try {
          init.onHelperStart?.({ program: helper.name, pid: helper.pid, target: step.target });
        } catch (e) {
          debug('fuse: onHelperStart threw: %s', (e as Error).message);
        }
        await this.#saveRecord();
      },
    };
  }

  /**
   * Names the session directory and writes the record. The directory is made (after a write
   * that names it) when something needs it: internal mounts, a staging directory, named log
   * files (a persistent mount's). A FUSE root's squashfuse_ll with a passed /dev/fuse fd needs
   * none: its log is an unnamed file (anonymousLog) and root() recorded the target already.
   */
  async begin(): Promise<void> {
    const { params: p, moveInto, pinned, dieWithOwner } = this.#init;
    this.#target = moveInto ? path.resolve(p.target) : pinned!.path;
    // Helpers that outlive us write to log files (a pipe breaks when we exit).
    // Named now, made once the record names it (a kill in between leaves nothing unrecorded).
    if (!dieWithOwner || this.#init.internalMounts || this.#staged()) this.#sessionName = await sessionDirName();
    const here = await currentMountNamespace();
    const enter = moveInto ? await entryProcess(moveInto) : undefined;
    const record = this.#record;
    record.target = this.#target;
    record.mntns = moveInto ? await mountNamespaceInode(moveInto) : here;
    if (moveInto) record.internalMntns = here;
    if (enter) record.enter = enter;
    if (this.#init.owner) record.owner = this.#init.owner;
    // Known to be needed: made now, in the same write.
    if (this.#sessionName !== undefined && (this.#init.internalMounts || this.#init.persist || this.#init.fdPassing === false)) {
      await this.#makeSession();
      return;
    }
    // A caller that keeps the record (root()) wrote it before calling: nothing new to say yet.
    if (!p.recordMerge) await this.#saveRecord();
  }

  /** The session directory: named in the record, then made (once). */
  async #makeSession(): Promise<string> {
    const sessionDir = this.#sessionName!;
    if (this.#sessionDir !== undefined) return sessionDir;
    this.#record.internalMounts = SESSION_MOUNT_POINTS.map((n) => path.join(sessionDir, n));
    this.#record.sessionDir = sessionDir;
    await this.#saveRecord();
    await fsp.mkdir(sessionDir, { mode: 0o700 });
    this.#sessionDir = sessionDir;
    return sessionDir;
  }

  /** Self-mounting helpers mount on our staging directory first (root, not in a user namespace). */
  #staged(): boolean {
    return euid() === 0 && !this.#init.userns;
  }

  input(): PlanInput {
    const i = this.#init;
    return {
      bins: i.bins,
      params: i.params,
      euid: euid(),
      readOnly: i.readOnly,
      target: this.#target,
      ...(i.pinned ? { pinned: i.pinned } : {}),
      ...(i.moveInto ? { moveInto: i.moveInto } : {}),
      ...(i.userns ? { userns: i.userns } : {}),
      allowOtherHere: i.allowOtherHere,
      fdPassing: i.fdPassing,
      staged: this.#staged(),
      ...(this.#sessionName !== undefined ? { sessionDir: this.#sessionName } : {}),
      dieWithOwner: i.dieWithOwner,
      timeoutMs: i.timeoutMs,
      ...(i.params.signal ? { signal: i.params.signal } : {}),
      layer: this.#layers.length,
    };
  }

  /** The image as an fd for the helper: `/proc/self/fd/N` is used as is, a path is opened (and closed later). */
  async openImage(kind: 'squashfs' | 'ext3', writable: boolean): Promise<number> {
    const { source, offset, size } = this.#init.params;
    let fd = sourceFd(source);
    if (fd === undefined) {
      try {
        fd = await openFd(source, writable ? fs.constants.O_RDWR : fs.constants.O_RDONLY);
      } catch (err) {
        throw fromNodeError(err, `opening ${source} for the FUSE helper`);
      }
      this.#fds.push(fd);
    }
    // The image's name is looked up for the message only if the check fails.
    await checkPartitionBounds(fd, kind, offset, size, () => this.imageName());
    return fd;
  }

  async imageName(): Promise<string> {
    const { source } = this.#init.params;
    if (sourceFd(source) === undefined) return source;
    return fsp.readlink(source).catch(() => source);
  }

  async internalDir(name: 'cipher' | 'plain'): Promise<string> {
    const dir = path.join(await this.#makeSession(), name);
    await fsp.mkdir(dir, { mode: 0o700 });
    return dir;
  }

  async openBeneath(dir: string, name: string): Promise<number> {
    const root = await pinOwnDir(dir);
    try {
      this.#fds.push(await openFileBeneath(root, name));
    } finally {
      await root.close();
    }
    return this.#fds[this.#fds.length - 1]!;
  }

  async serve(step: Step): Promise<void> {
    if (step.staging) {
      await this.#makeSession();
      await fsp.mkdir(step.staging, { mode: 0o700 });
    }
    // The log: a named file in the session directory once it exists, else an unnamed one
    // (nothing to record or remove; the helper's copy keeps it until it exits, ours is read
    // for its exit's output), else (no O_TMPFILE here) the session directory is made for it.
    let anonymous: { fd: number; taken: boolean } | undefined;
    if (step.logFile !== undefined && this.#sessionDir === undefined) {
      const fd = await openAnonymousLog(await sessionsDir());
      if (fd !== null) anonymous = { fd, taken: false };
      else await this.#makeSession();
    }
    let layer: Layer;
    try {
      layer = await serve(anonymous ? { ...step, logFile: undefined, anonymousLog: anonymous } : step, this.#ctx);
    } finally {
      if (anonymous && !anonymous.taken) await closeFd(anonymous.fd).catch(() => undefined);
    }
    this.#layers.push(layer);
    // The final layer owns the pinned target from now on.
    if (layer.pinned === this.#init.pinned) this.#pinTaken = true;
  }

  #timings = (layer: Layer): StopTimings => layerStopTimings(this.#init.stop, this.#init.timeoutMs, layer);

  /** Records the finished mount and hands it over as a FuseMounted. */
  async finish(): Promise<FuseMounted> {
    const p = this.#init.params;
    throwIfAborted(p.signal);
    const layers = this.#layers;
    const final = layers[layers.length - 1]!;
    this.#record.fstype = final.fstype;
    this.#record.internalMounts = layers.slice(0, -1).map((l) => l.target).reverse();
    await this.#saveRecord();
    const mounted = new FuseMounted({
      target: final.target,
      readOnly: final.readOnly,
      layers,
      sessionDir: this.#sessionDir,
      record: p.recordMerge ? undefined : { target: this.#record.target, mntns: this.#record.mntns },
      ctx: this.#ctx,
      timings: this.#timings,
    });
    if (this.#init.dieWithOwner) trackUntilClosed(mounted);
    debug('fuse: %s at %s served by %s', p.filesystem, final.target, mounted.helpers.map((h) => `${h.program}[${h.pid}]`).join(' <- '));
    return mounted;
  }

  /** Undoes whatever was built, in reverse; errors are logged (the caller sees the original one). */
  async undo(): Promise<void> {
    const undo = await releaseLayers(this.#layers, this.#ctx, this.#timings);
    if (this.#sessionDir) await removeSessionDir(this.#sessionDir).catch((e: unknown) => undo.push(e));
    if (this.#recorded && !this.#init.params.recordMerge && undo.length === 0) await removeMountRecord(this.#record.target, this.#record.mntns).catch((e: unknown) => undo.push(e));
    for (const e of undo) debug('fuse: undoing a failed mount: %s', (e as Error).message);
    if (this.#init.ownsPin && !this.#pinTaken) await this.#init.pinned!.close();
  }

  /** Closes the fds we opened for helpers (each has its own copy). */
  async closeFds(): Promise<void> {
    for (const fd of this.#fds) await closeFd(fd).catch(() => undefined);
  }

  /**
   * The record as it stands, or merged into the caller's (root()'s) record of the same target:
   * the caller's record object when it handed it over (kept up to date here, so that what the
   * caller writes later still names our helpers), else the one on disk, read once (nobody else
   * writes it while the mount is built). A write that would say nothing new is skipped.
   */
  async #saveRecord(): Promise<void> {
    const record = this.#record;
    let out: FuseMountRecord = record;
    if (this.#init.params.recordMerge) {
      this.#prior ??= (await findMountRecord(record.target, record.mntns).catch(() => undefined)) as FuseMountRecord | undefined;
      if (this.#prior) out = mergeFuseRecord(this.#prior as FuseMountRecord, record);
    }
    const text = JSON.stringify(out);
    if (text === this.#written) return;
    // Our own record's first write is exclusive (a target another mount holds is
    // ERR_TARGET_IN_USE before any helper starts); a caller's record we merge into is theirs.
    await saveMountRecord(out, { exclusive: !this.#recorded && out === record });
    this.#written = text;
    this.#recorded = true;
    if (this.#prior && this.#prior === this.#init.params.mergeInto) Object.assign(this.#prior, out);
  }
}

/**
 * Our record merged into the caller's record of the same target: our helpers and the mounts
 * under our session directory are ours to state; the caller's other entries stay.
 */
export function mergeFuseRecord(prior: FuseMountRecord, ours: FuseMountRecord): FuseMountRecord {
  return {
    ...prior,
    driver: 'fuse',
    fstype: ours.fstype,
    helpers: [...prior.helpers.filter((h) => !ours.helpers.some((x) => x.pid === h.pid)), ...ours.helpers],
    internalMounts: [...ours.internalMounts, ...prior.internalMounts.filter((m) => !(ours.sessionDir && pathContains(ours.sessionDir, m)) && !ours.internalMounts.includes(m))],
    moreSessionDirs: [...new Set([...(prior.moreSessionDirs ?? []), ...(ours.sessionDir ? [ours.sessionDir] : [])])].filter((d) => d !== prior.sessionDir),
  };
}

const euid = (): number => process.geteuid?.() ?? -1;

/**
 * A new session directory's path: a private directory for internal mounts and logs, directly
 * under `<state dir>/sessions` (checked there), the only place a mount record may name
 * (DriverParams.sessionPath is not used for it). Made after the record names it; mkdir's
 * EEXIST guards a clash.
 */
async function sessionDirName(): Promise<string> {
  return path.join(await sessionsDir(), `fuse-${uniqueSuffix()}`);
}

/** O_TMPFILE (Linux; the generic value, which every architecture Node runs on uses). */
const O_TMPFILE = 0o20000000 | fs.constants.O_DIRECTORY;

/**
 * An unnamed file in `dir` for a helper's output (O_TMPFILE, 0600): nothing to record or
 * remove, gone with the last fd. Null where the filesystem (or kernel) has no O_TMPFILE.
 */
async function openAnonymousLog(dir: string): Promise<number | null> {
  if (process.platform !== 'linux') return null;
  try {
    return await openFd(dir, O_TMPFILE | fs.constants.O_RDWR, 0o600);
  } catch (err) {
    if (hasErrorCode(err, 'EOPNOTSUPP') || hasErrorCode(err, 'EISDIR') || hasErrorCode(err, 'EINVAL') || hasErrorCode(err, 'ENOTSUP')) return null;
    throw fromNodeError(err, `opening a log file in ${dir}`);
  }
}
