// squashfuse_ll / squashfuse: its command line (Apptainer's, minus its traps), its plan
// (plan.ts) and the driver's `squashfs` entry:
//   squashfuse[_ll] -f -o ro[,allow_other][,uid=U,gid=G][,offset=N][,nosuid,nodev] SOURCE MOUNTPOINT
// `offset=` only when > 0 (a bare image), `nosuid,nodev` when the helper mounts by itself (with
// a passed /dev/fuse fd our own mount(2) flags decide). squashfuse has no size limit: what it
// reads is bounded by the superblock's bytes_used, which the driver checks against the
// partition size before starting it (bounds.ts), so a squashfs partition cannot make it read
// the partitions after it as its own data.

import { helperStep, needProgram, type FuseFilesystem, type PlanInput, type Step } from './plan';

export interface SquashfuseArgs {
  offset: number;
  allowOther: boolean;
  /** The helper mounts by itself (no /dev/fuse fd passed): ask libfuse for nosuid,nodev. */
  selfMount: boolean;
  /** Owner to show for every file (`-o uid=,gid=`; only where the program supports it). */
  owner?: { uid: number; gid: number };
}

export function squashfuseArgs(o: SquashfuseArgs, source: string, mountpoint: string): string[] {
  const opts = ['ro'];
  if (o.allowOther) opts.push('allow_other');
  if (o.owner) opts.push(`uid=${o.owner.uid}`, `gid=${o.owner.gid}`);
  if (o.offset > 0) opts.push(`offset=${o.offset}`);
  if (o.selfMount) opts.push('nosuid', 'nodev');
  return ['-f', '-o', opts.join(','), source, mountpoint];
}

/**
 * squashfuse serving the squashfs at `offset` of `sourceFd`, at the final target (`internal`
 * null: the caller's `owner` applies) or at an inner mount of a chain (gocryptfs.ts).
 */
export function squashfusePlan(input: PlanInput, sourceFd: number, offset: number, internal: string | null): Step {
  const b = helperStep(input, needProgram(input.bins, 'squashfuse', 'mount squashfs'), internal);
  const owner = internal === null ? input.params.owner : undefined;
  return {
    ...b,
    sourceFd,
    argv: (src, mp) => squashfuseArgs({ offset, allowOther: b.allowOther, selfMount: !b.fdPassing, ...(owner ? { owner } : {}) }, src!, mp),
  };
}

/** squashfs: one squashfuse over the partition. */
export const squashfs: FuseFilesystem = {
  alwaysReadOnly: true,
  internalMounts: false,
  takesOwner: true,
  async mount(run) {
    const input = run.input();
    const src = await run.openImage('squashfs', false);
    await run.serve(squashfusePlan(input, src, input.params.offset, null));
  },
};
