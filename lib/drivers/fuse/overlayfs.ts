// fuse-overlayfs, for overlays the kernel's overlayfs cannot make (no privilege, or a lower
// layer on FUSE):
//   fuse-overlayfs -f -o lowerdir=...[,upperdir=...,workdir=...][,allow_other][,ro],noacl MOUNTPOINT
// from MountParams.fsOptions (kernel overlay options), dropping the ones fuse-overlayfs does not
// know (xino=, index=, metacopy=, redirect_dir=, userxattr, ...).

import { invalidArgValue } from '../../errors';

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
