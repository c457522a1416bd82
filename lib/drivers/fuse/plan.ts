// What the driver asks of one helper (a Step), and how a filesystem turns the driver's inputs
// into Steps. A plan (squashfusePlan, fuse2fsPlan, gocryptfsPlan, overlayPlan, next to each
// helper's command line) is a pure function of PlanInput: which program, its arguments, its
// stdin and extra fds, and what to wait for (`fdPassing`: the stat of a mount we made with a
// passed /dev/fuse fd, or else the helper's own mount in mountinfo). The environment is not
// per plan: every helper gets the same minimal one (helper-process.ts). Each filesystem's
// `FuseFilesystem` entry runs its plans in order through a MountRun (mount-run.ts), which opens
// sources, serves the steps (bring-up.ts) and records them.

import * as path from 'node:path';
import { MS_NOEXEC, mountFlagsToNumber } from '../../mount/flags';
import type { NamespaceTarget } from '../../ns/namespace';
import type { PinnedDir } from '../../path/pinned';
import type { DriverMountParams } from '../types';
import { missingProgram, type FuseBinaries, type FuseProgram } from './binaries';

/** What the driver asks of one helper. */
export interface Step {
  /** The program (absolute path). */
  program: string;
  /** argv after the program, given the source argument (or null) and the mount point argument. */
  argv: (source: string | null, mountpoint: string) => string[];
  /** A file the helper gets as its fd 3 and is told /proc/self/fd/3 (Apptainer's fd-drift fix). */
  sourceFd?: number;
  /** Written to its stdin (gocryptfs' key). */
  input?: Buffer;
  /** More fds the helper gets after sourceFd (fuse-overlayfs' layers), at the following fd numbers. */
  extraFds?: number[];
  /** Mount point: its name for messages, the path for a helper mounting there by itself, or the path inside `moveInto`. */
  target: string;
  /** The target as a pinned fd (our namespace): the mount lands on it. */
  pinned?: PinnedDir;
  /** Serve here, then move the finished mount to `target` inside this mount namespace (root only). */
  moveInto?: NamespaceTarget;
  /** A self-mounting helper (as root) mounts here first, a directory of our own session. */
  staging?: string;
  readOnly: boolean;
  allowOther: boolean;
  /** MS_NOEXEC if the caller asked for it. */
  noexec: boolean;
  /** Start the helper inside this user namespace (our mount namespace; it mounts by itself). */
  userns?: NamespaceTarget;
  /** Hand it a mounted /dev/fuse fd (root, program that can take it). */
  fdPassing: boolean;
  timeoutMs: number;
  logFile?: string;
  /**
   * Instead of logFile: an unnamed log file we opened (mount-run.ts); `taken` once the helper
   * process owns it (it closes it after reading the exit's output).
   */
  anonymousLog?: { fd: number; taken: boolean };
  signal?: AbortSignal;
}

/** Everything a plan depends on, decided by the driver before any helper runs. */
export interface PlanInput {
  bins: FuseBinaries;
  params: Pick<DriverMountParams, 'offset' | 'flags' | 'fsOptions' | 'key'> & { owner?: { uid: number; gid: number } };
  /** Our effective uid. */
  euid: number;
  readOnly: boolean;
  /** The final mount point (the pinned target's name, or the path inside `moveInto`). */
  target: string;
  pinned?: PinnedDir;
  /** Served here, then moved into this mount namespace (root). */
  moveInto?: NamespaceTarget;
  /** Helpers for the final mount run in this user namespace and mount by themselves. */
  userns?: NamespaceTarget;
  /** allow_other may be asked for on a mount in our own namespace (root, or fuse.conf's user_allow_other). */
  allowOtherHere: boolean;
  /** FuseDriverOptions.fdPassing. */
  fdPassing: 'auto' | false;
  /** Self-mounting helpers mount on a staging directory of the session first (root, no userns). */
  staged: boolean;
  sessionDir?: string;
  /** Helpers die with us: no log files (a pipe is enough). */
  dieWithOwner: boolean;
  timeoutMs: number;
  signal?: AbortSignal;
  /** How many layers are served already (numbers log files and staging directories). */
  layer: number;
}

/** The helper's path, or ERR_FUSE_UNAVAILABLE saying what it was needed for. */
export function needProgram(bins: FuseBinaries, role: Exclude<FuseProgram, 'fusermount3'>, purpose: string): string {
  const program = role === 'fuse-overlayfs' ? bins.fuseOverlayfs : bins[role];
  if (!program) throw missingProgram(role, purpose, bins.searched);
  return program;
}

/**
 * The part of a Step every helper shares, for `program` mounting at the final target
 * (`internal` null) or at an internal path of the session (a chain's inner mounts).
 */
export function helperStep(input: PlanInput, program: string, internal: string | null): Omit<Step, 'argv'> {
  const final = internal === null;
  // A helper asked to run in a user namespace mounts by itself from inside it.
  const fdPassing = input.euid === 0 && !(input.userns && final) && input.fdPassing !== false && input.bins.fdPassing[program] === true;
  const step: Omit<Step, 'argv'> = {
    program,
    target: internal ?? input.target,
    readOnly: input.readOnly,
    allowOther: final && (input.moveInto !== undefined || input.userns !== undefined || input.allowOtherHere),
    noexec: (input.params.flags & MS_NOEXEC) !== 0,
    fdPassing,
    timeoutMs: input.timeoutMs,
    // Helpers that outlive us write to log files there (a pipe breaks when we exit).
    ...(!input.dieWithOwner ? { logFile: path.join(input.sessionDir!, `${input.layer}-${path.basename(program)}.log`) } : {}),
    ...(input.signal ? { signal: input.signal } : {}),
  };
  if (final) {
    if (input.pinned) step.pinned = input.pinned;
    if (input.moveInto) step.moveInto = input.moveInto;
    if (input.userns) step.userns = input.userns;
  }
  if (!fdPassing && input.staged && final) step.staging = path.join(input.sessionDir!, `stage-${input.layer}`);
  return step;
}

/**
 * The mount(2) call we make for a helper given a /dev/fuse fd: nosuid, nodev, ro and noexec as
 * the step asks, and the FUSE options (`subtype=` names the helper where the mount is attached
 * at once; a detached one is created with fstype `fuse.<name>` instead).
 */
export function fdPassingMount(step: Pick<Step, 'program' | 'readOnly' | 'noexec' | 'allowOther' | 'moveInto'>, fuseFd: number, uid: number, gid: number): { flags: number; data: string } {
  const flags = mountFlagsToNumber({ nosuid: true, nodev: true, ro: step.readOnly, noexec: step.noexec });
  const data = [`fd=${fuseFd}`, 'rootmode=40000', `user_id=${uid}`, `group_id=${gid}`, 'default_permissions'];
  if (step.allowOther) data.push('allow_other');
  if (!step.moveInto) data.push(`subtype=${path.basename(step.program)}`);
  return { flags, data: data.join(',') };
}

/** What a filesystem's mount procedure may do (mount-run.ts): open, serve, record. */
export interface MountRun {
  /** The inputs as they stand now (`layer` counts the layers served so far). */
  input(): PlanInput;
  /** The image as an fd for a helper, its filesystem's size checked against the partition's. */
  openImage(kind: 'squashfs' | 'ext3', writable: boolean): Promise<number>;
  /** The image's name for messages. */
  imageName(): Promise<string>;
  /** A new directory of the session for an inner mount of a chain. */
  internalDir(name: 'cipher' | 'plain'): Promise<string>;
  /** A file inside an inner mount, opened without following symlinks (closed after the mount). */
  openBeneath(dir: string, name: string): Promise<number>;
  /** Starts the step's helper and waits until it serves; the layer is undone if the mount fails. */
  serve(step: Step): Promise<void>;
}

/** One filesystem of the FUSE driver: the driver's table holds one per `params.filesystem`. */
export interface FuseFilesystem {
  /** Mounted read-only whatever the flags say. */
  readonly alwaysReadOnly: boolean;
  /** Mounts helpers on internal paths of the session directory (a chain). */
  readonly internalMounts: boolean;
  /** Takes `params.owner`. */
  readonly takesOwner: boolean;
  /** Runs the helpers, in order, through `run`. */
  mount(run: MountRun): Promise<void>;
}
