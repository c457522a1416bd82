// What the driver asks of one helper (a Step), and the mount we make for a helper that takes
// a passed /dev/fuse fd.

import * as path from 'node:path';
import { mountFlagsToNumber } from '../../mount/flags';
import type { NamespaceTarget } from '../../ns/namespace';
import type { PinnedDir } from '../../path/pinned';

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
  signal?: AbortSignal;
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
