// Tests that run the library (or mocha) as nobody need to read the checkout. A clone in a
// directory others cannot traverse (mktemp -d makes 0700 ones) is reached through a read-only
// bind mount of the checkout on a 0755 directory, made inside the test's private mount
// namespace and undone by the caller; a checkout others can reach is used as it is.
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
 * The checkout as nobody can read it. Throws (with the reason) when it would need a bind mount
 * and mounts here would reach the host's namespace.
 */
export function nobodyView(): NobodyView {
  const blocked = blockedAncestor(repoRoot);
  if (blocked === null) return { root: repoRoot, close: () => undefined };
  if (mountsReachHost()) throw new Error(`nobody cannot traverse ${blocked}, and a bind mount of the checkout would reach the host here (run inside unshare -m)`);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'imgmount-view-'));
  fs.chmodSync(dir, 0o755);
  registerMountPoint(dir);
  execFileSync('mount', ['--bind', repoRoot, dir]);
  execFileSync('mount', ['-o', 'remount,bind,ro', dir]);
  let open = true;
  return {
    root: dir,
    close: () => {
      if (!open) return;
      open = false;
      execFileSync('umount', [dir]);
      fs.rmdirSync(dir);
    },
  };
}
