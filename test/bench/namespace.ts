// The programs that mount for real (npm run bench, npm run soak) run in a private mount
// namespace of their own, always. Whether the namespace they were started in is the host's
// cannot be told in general (/proc/1/ns/mnt is unreadable in some containers, and an
// unreadable link says nothing), so they never guess: they re-run themselves under
// `unshare -m --propagation private`, and the re-run checks that its namespace differs from
// the one it was started from (passed in the environment).
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';

export const ownMountNamespace = (): string => fs.readlinkSync('/proc/self/ns/mnt');

export interface Reexec {
  /** Program name for messages ("bench", "soak"). */
  name: string;
  /** Environment variable that carries the starting namespace into the re-run. */
  fromVar: string;
  /** More environment for the re-run. */
  env?: NodeJS.ProcessEnv;
}

/**
 * In the first run: runs this script again (same node, same arguments) in a new private
 * mount namespace and returns its exit status. In the re-run: returns null (go on), or throws
 * when the namespace is not a new one.
 */
export function inPrivateMountNamespace(r: Reexec): number | null {
  const from = process.env[r.fromVar];
  if (from === undefined) {
    const child = spawnSync('unshare', ['-m', '--propagation', 'private', process.execPath, ...process.execArgv, process.argv[1]!, ...process.argv.slice(2)], {
      stdio: 'inherit',
      env: { ...process.env, ...r.env, [r.fromVar]: ownMountNamespace() },
    });
    if (child.error) process.stderr.write(`${r.name}: cannot run unshare: ${child.error.message}\n`);
    return child.status ?? 1;
  }
  if (ownMountNamespace() === from) {
    throw new Error(`${r.name}: not in a private mount namespace of its own (unshare -m did not give one): refusing to mount`);
  }
  return null;
}
