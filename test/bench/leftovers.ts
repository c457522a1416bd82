// What the bench must not leave: read from the kernel, not through the library under test.
// Compared with a snapshot taken at the start, in the bench's own mount namespace:
//  - mounts: any entry of /proc/self/mountinfo that was not there (the namespace is private,
//    so every new one is the bench's), and anything mounted under its temporary directory;
//  - loop devices: any bound to the image or to a file under the temporary directory
//    (/sys/block/loop*/loop/backing_file, what `losetup -a` shows) that was not bound before;
//  - processes: any other process in this mount namespace (a FUSE helper, a shell);
//  - the library's mount records and session directories in the bench's state directory.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { boundLoops, mountPoints, within } from '../support/leaks';
import { ownMountNamespace } from './namespace';

export interface Snapshot {
  mounts: Set<string>;
  loops: Set<string>;
}

export interface Scope {
  image: string;
  tmp: string;
  stateDir: string;
}

/** The lines of /proc/self/mountinfo, as a set. */
function mountLines(): Set<string> {
  return new Set(fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n').filter(Boolean));
}

function ours(backingFile: string, s: Scope): boolean {
  return backingFile === s.image || (path.isAbsolute(backingFile) && within(backingFile, s.tmp));
}

export function snapshot(s: Scope): Snapshot {
  return { mounts: mountLines(), loops: new Set(boundLoops().filter((l) => ours(l.backingFile, s)).map((l) => l.name)) };
}

/** Everything left since `before`; empty when the machine is as it was. */
export function leftovers(before: Snapshot, s: Scope): string[] {
  const left: string[] = [];
  for (const line of mountLines()) if (!before.mounts.has(line)) left.push(`mount: ${line}`);
  for (const mp of mountPoints()) if (within(mp, s.tmp)) left.push(`mounted under the bench's directory: ${mp}`);
  for (const l of boundLoops()) if (ours(l.backingFile, s) && !before.loops.has(l.name)) left.push(`loop device /dev/${l.name} bound to ${l.backingFile}`);
  const ns = ownMountNamespace();
  for (const pid of fs.readdirSync('/proc').filter((n) => /^\d+$/.test(n) && Number(n) !== process.pid)) {
    try {
      if (fs.readlinkSync(`/proc/${pid}/ns/mnt`) !== ns) continue;
      left.push(`process ${pid} (${fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ').trim()}) in the bench's mount namespace`);
    } catch {
      // gone meanwhile
    }
  }
  for (const [sub, what] of [['mounts', 'mount record'], ['sessions', 'session directory']] as const) {
    const d = path.join(s.stateDir, sub);
    if (fs.existsSync(d)) for (const n of fs.readdirSync(d)) left.push(`${what} ${path.join(d, n)}`);
  }
  return left;
}

/** leftovers(), given up to `ms` for what the kernel and the helpers finish asynchronously (autoclear, a helper exiting). */
export async function settledLeftovers(before: Snapshot, s: Scope, ms = 2000): Promise<string[]> {
  let left = leftovers(before, s);
  for (let waited = 0; left.length > 0 && waited < ms; waited += 100) {
    await new Promise((r) => setTimeout(r, 100));
    left = leftovers(before, s);
  }
  return left;
}
