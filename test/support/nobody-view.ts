// Tests that run the library (or mocha) as nobody need to read the checkout. A clone made in
// (or as) a directory others cannot traverse, as `git clone URL "$(mktemp -d)"` does, is made
// reachable for the test and put back afterwards; a checkout others can reach is used as it is.
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { mountsReachHost } from './kernel';
import { registerMountPoint } from './leaks';
import { repoRoot } from './paths';

export interface NobodyView {
  /** The checkout's root as nobody reaches it. */
  root: string;
  /** Undoes the bind mount, if one was made. */
  close(): void;
}

/** The first directory from / down to `p` that others (nobody) may not traverse, or null. */
function blockedAncestor(p: string): string | null {
  let dir = path.resolve(p);
  const chain: string[] = [];
  for (;;) {
    chain.unshift(dir);
    const up = path.dirname(dir);
    if (up === dir) break;
    dir = up;
  }
  return chain.find((d) => (fs.statSync(d).mode & 0o001) === 0) ?? null;
}

/**
 * The checkout as nobody can read it: its own directory made traversable by others (o+x) if it
 * is not, and, if a directory above it is not either, the checkout bind-mounted read-only on a
 * 0755 directory. Throws (with the reason) when that bind mount would reach the host's mount
 * namespace. close() undoes both.
 */
export function nobodyView(): NobodyView {
  const undo: Array<() => void> = [];
  const close = (): void => {
    while (undo.length) undo.pop()!();
  };
  const mode = fs.statSync(repoRoot).mode & 0o7777;
  if ((mode & 0o001) === 0) {
    fs.chmodSync(repoRoot, mode | 0o001);
    undo.push(() => fs.chmodSync(repoRoot, mode));
  }
  const blocked = blockedAncestor(path.dirname(repoRoot));
  if (blocked === null) return { root: repoRoot, close };
  if (mountsReachHost()) {
    close();
    throw new Error(`nobody cannot traverse ${blocked}, and a bind mount of the checkout would reach the host here (run inside unshare -m)`);
  }
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'imgmount-view-'));
  fs.chmodSync(dir, 0o755);
  undo.push(() => fs.rmdirSync(dir));
  registerMountPoint(dir);
  execFileSync('mount', ['--bind', repoRoot, dir]);
  undo.push(() => execFileSync('umount', [dir]));
  execFileSync('mount', ['-o', 'remount,bind,ro', dir]);
  return { root: dir, close };
}
