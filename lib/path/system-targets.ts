// Directories imgmount never mounts on (or unmounts), however the caller's path got there:
// mounting over them would hide or replace the host's own system. Checked on the pinned fd,
// after resolution, by the kernel's name for it and by identity (device and inode), so a
// symlink or a bind mount of /etc elsewhere is refused too.

import * as fs from 'node:fs';
import { ImgmountError } from '../errors';

/** Refused as mount targets themselves. */
export const SYSTEM_TARGETS: readonly string[] = [
  '/',
  '/proc',
  '/sys',
  '/dev',
  '/etc',
  '/usr',
  '/boot',
  '/run',
  '/var',
  '/bin',
  '/sbin',
  '/lib',
  '/lib32',
  '/lib64',
  '/libx32',
  '/home',
  '/root',
];

/** Refused together with everything below them (kernel interfaces and device nodes). */
export const SYSTEM_SUBTREES: readonly string[] = ['/proc', '/sys', '/dev'];

interface Identity {
  path: string;
  dev: bigint;
  ino: bigint;
}

let identities: Promise<{ exact: Identity[]; subtreeDevs: Map<bigint, string> }> | undefined;

/**
 * The listed directories' identities, read once (asynchronously) per process. A subtree
 * root's device counts only where it is its own filesystem (proc, sysfs, devtmpfs), not a
 * plain directory of the root filesystem.
 */
function systemIdentities(): Promise<{ exact: Identity[]; subtreeDevs: Map<bigint, string> }> {
  identities ??= (async () => {
    const stat = (p: string) => fs.promises.stat(p, { bigint: true }).then(
      (st) => ({ path: p, dev: st.dev, ino: st.ino }),
      () => null,
    );
    const exact = (await Promise.all(SYSTEM_TARGETS.map(stat))).filter((x): x is Identity => x !== null);
    const rootDev = exact.find((e) => e.path === '/')?.dev;
    const subtreeDevs = new Map<bigint, string>();
    for (const e of exact) if (SYSTEM_SUBTREES.includes(e.path) && e.dev !== rootDev) subtreeDevs.set(e.dev, e.path);
    return { exact, subtreeDevs };
  })();
  return identities;
}

/**
 * The same identities as a native guard takes them: a target whose (dev, ino) is one of the
 * pairs of `refuseIds` or whose dev is one of `refuseDevs` is refused (native/attach-mount.cc).
 */
export async function systemTargetGuard(): Promise<SystemTargetGuard> {
  guardMemo ??= systemIdentities().then((ids) => ({
    refuseIds: BigUint64Array.from(ids.exact.flatMap((e) => [e.dev, e.ino])),
    refuseDevs: BigUint64Array.from(ids.subtreeDevs.keys()),
  }));
  return guardMemo;
}
/** (dev, ino) pairs flattened: dev, ino, dev, ino, ... */
export interface SystemTargetGuard {
  refuseIds: BigUint64Array;
  refuseDevs: BigUint64Array;
}
let guardMemo: Promise<SystemTargetGuard> | undefined;

function within(p: string, dir: string): boolean {
  return p === dir || p.startsWith(dir.endsWith('/') ? dir : `${dir}/`);
}

/** Why `canonical` (a kernel-resolved absolute path) is a system target, or null. */
export function systemTargetReason(canonical: string): string | null {
  for (const t of SYSTEM_SUBTREES) if (within(canonical, t)) return canonical === t ? `it is ${t}` : `it is inside ${t}`;
  if (SYSTEM_TARGETS.includes(canonical)) return `it is ${canonical}`;
  return null;
}

/**
 * Throws ERR_UNSAFE_TARGET when the directory `dir` (pinned, with the kernel's name for it)
 * is one of the system directories, by name or by identity.
 */
export async function checkSystemTarget(dir: { path: string; dev: number | bigint; ino: number | bigint }, asGiven: string): Promise<void> {
  let why = systemTargetReason(dir.path);
  if (!why) {
    const ids = await systemIdentities();
    const dev = BigInt(dir.dev);
    const ino = BigInt(dir.ino);
    const same = ids.exact.find((e) => e.dev === dev && e.ino === ino);
    if (same) why = `it is ${same.path} (reached as ${dir.path})`;
    else if (ids.subtreeDevs.has(dev)) why = `it is on the filesystem of ${ids.subtreeDevs.get(dev)}`;
  }
  if (why)
    throw new ImgmountError(
      'ERR_UNSAFE_TARGET',
      `refusing to use ${asGiven}${asGiven === dir.path ? '' : ` (${dir.path})`} as a mount point: ${why}; ` +
        `imgmount never mounts on ${SYSTEM_TARGETS.join(', ')} nor below ${SYSTEM_SUBTREES.join(', ')}`,
      { path: dir.path, details: { given: asGiven, resolved: dir.path } },
    );
}
