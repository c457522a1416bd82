// fuse-overlayfs, for overlays the kernel's overlayfs cannot make (no privilege, or a lower
// layer on FUSE): its command line, its plan (plan.ts) and the driver's `overlay` entry:
//   fuse-overlayfs -f -o lowerdir=...[,upperdir=...,workdir=...][,allow_other][,ro],noacl MOUNTPOINT
// from MountParams.fsOptions (kernel overlay options), dropping the ones fuse-overlayfs does not
// know (xino=, index=, metacopy=, redirect_dir=, userxattr, ...).

import { invalidArgValue } from '../../errors';
import { helperStep, needProgram, type FuseFilesystem, type PlanInput, type Step } from './plan';

const PASSED = new Set(['lowerdir', 'upperdir', 'workdir', 'squash_to_root', 'squash_to_uid', 'squash_to_gid', 'uidmapping', 'gidmapping', 'static_nlink', 'volatile']);

export interface OverlayArgs {
  readOnly: boolean;
  allowOther: boolean;
}

/** Overlay options from fsOptions (each "k=v" or "k1=v1,k2=v2"), kept in order. */
export function overlayOptions(fsOptions: readonly string[]): string[] {
  const out: string[] = [];
  for (const item of fsOptions) {
    if (typeof item !== 'string') throw invalidArgValue('params.fsOptions', item, 'must be strings');
    for (const opt of item.split(',')) {
      if (opt === '') continue;
      const key = opt.split('=', 1)[0]!;
      if (PASSED.has(key)) out.push(opt);
    }
  }
  if (!out.some((o) => o.startsWith('lowerdir=')))
    throw invalidArgValue('params.fsOptions', fsOptions.join(','), 'must give lowerdir= for an overlay');
  const upper = out.some((o) => o.startsWith('upperdir='));
  if (upper !== out.some((o) => o.startsWith('workdir=')))
    throw invalidArgValue('params.fsOptions', fsOptions.join(','), 'must give upperdir= and workdir= together');
  return out;
}

export function overlayArgs(o: OverlayArgs, options: readonly string[], mountpoint: string): string[] {
  const opts = [...options];
  if (o.allowOther) opts.push('allow_other');
  if (o.readOnly) opts.push('ro');
  opts.push('noacl');
  return ['-f', '-o', opts.join(','), mountpoint];
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

/** fuse-overlayfs over the layers of `params.fsOptions`: read-only as asked, or when there is no upper layer. */
export function overlayPlan(input: PlanInput): Step {
  const program = needProgram(input.bins, 'fuse-overlayfs', 'mount overlays');
  // Layers given as pinned fds (/proc/self/fd/N) become the helper's own fds 3, 4, ...
  const layers = handOverLayers(overlayOptions(input.params.fsOptions));
  const readOnly = input.readOnly || !layers.options.some((o) => o.startsWith('upperdir='));
  const b = { ...helperStep(input, program, null), readOnly, extraFds: layers.fds };
  return { ...b, argv: (_s, mp) => overlayArgs({ readOnly, allowOther: b.allowOther }, layers.options, mp) };
}

/** overlay: one fuse-overlayfs. */
export const overlay: FuseFilesystem = {
  alwaysReadOnly: false,
  internalMounts: false,
  takesOwner: false,
  async mount(run) {
    await run.serve(overlayPlan(run.input()));
  },
};
