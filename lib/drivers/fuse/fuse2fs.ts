// fuse2fs: its command line, its plan (plan.ts) and the driver's `ext3` entry. e2fsprogs' own
// `-o offset=<bytes>` (1.47) reaches an ext3 partition inside a SIF, so none of Apptainer's
// LD_PRELOAD shim and environment replacement:
//   fuse2fs SOURCE MOUNTPOINT -f -o [ro,][fakeroot,][allow_other,][default_permissions,]nosuid,nodev[,offset=N]
// `fakeroot` when the helper does not run as root (uid 0 in its user namespace counts as root:
// the kernel hands fuse2fs ids as that namespace sees them). fuse2fs has no size limit either:
// it reads within the superblock's blocks_count x block_size, which the driver checks against
// the partition size before starting it (bounds.ts).
//
// Debian's fuse2fs is a libfuse 2 program: it cannot take a passed /dev/fuse fd (given
// /dev/fd/N it resolves the link and mounts over /dev/fuse), always mounts by itself, and
// keeps `ro` to itself (the kernel mount stays rw; the driver then remounts it read-only).

import { helperStep, needProgram, type FuseFilesystem, type PlanInput, type Step } from './plan';

export interface Fuse2fsArgs {
  offset: number;
  readOnly: boolean;
  allowOther: boolean;
  fakeroot: boolean;
}

export function fuse2fsArgs(o: Fuse2fsArgs, source: string, mountpoint: string): string[] {
  const opts: string[] = [];
  if (o.readOnly) opts.push('ro');
  if (o.fakeroot) opts.push('fakeroot');
  if (o.allowOther) opts.push('allow_other');
  // With fakeroot fuse2fs lets its user act as root; the kernel must not check modes first.
  if (!o.fakeroot) opts.push('default_permissions');
  opts.push('nosuid', 'nodev');
  if (o.offset > 0) opts.push(`offset=${o.offset}`);
  return [source, mountpoint, '-f', '-o', opts.join(',')];
}

/** fuse2fs serving the ext3 partition of `sourceFd` at the final target. */
export function fuse2fsPlan(input: PlanInput, sourceFd: number): Step {
  const b = helperStep(input, needProgram(input.bins, 'fuse2fs', 'mount ext3'), null);
  // Not root (uid 0 of a user namespace the helper runs in counts as root): fuse2fs acts as root for its user.
  const fakeroot = input.euid !== 0 && !input.userns;
  return { ...b, sourceFd, argv: (s, mp) => fuse2fsArgs({ offset: input.params.offset, readOnly: input.readOnly, allowOther: b.allowOther, fakeroot }, s!, mp) };
}

/** ext3: one fuse2fs over the partition, writable unless asked read-only. */
export const ext3: FuseFilesystem = {
  alwaysReadOnly: false,
  internalMounts: false,
  takesOwner: false,
  async mount(run) {
    const input = run.input();
    needProgram(input.bins, 'fuse2fs', 'mount ext3'); // before the image is opened
    const src = await run.openImage('ext3', !input.readOnly);
    await run.serve(fuse2fsPlan(input, src));
  },
};
