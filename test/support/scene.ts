// A scene: a directory of a test's own, holding the image copy, the targets and the state
// directory (records, session directories), so that what an operation left behind can be told
// apart from everything else on the machine (other tests, other engineers' runs).
import * as fs from 'node:fs';
import * as path from 'node:path';
import { testTmp } from './hooks';
import { testImages } from './images';
import { boundLoops, mountPoints } from './leaks';

export interface Scene {
  dir: string;
  state: string;
  sif: string;
  target(name: string): string;
}

let scenes = 0;

/** A fresh scene under the run's scratch directory: `<prefix>-N/` with a copy of the test SIF. */
export function scene(prefix = 'scene'): Scene {
  const dir = path.join(testTmp, `${prefix}-${++scenes}`);
  fs.mkdirSync(dir, { recursive: true });
  const sif = path.join(dir, 'image.sif');
  fs.copyFileSync(testImages().sif, sif);
  const state = path.join(dir, 'state');
  return {
    dir,
    state,
    sif,
    target(name) {
      const t = path.join(dir, name);
      fs.mkdirSync(t, { recursive: true });
      return t;
    },
  };
}

/** Processes whose environment marks them as helpers of `pid` (see cleanup()). */
export function markedHelpers(pid: number): number[] {
  const out: number[] = [];
  for (const n of fs.readdirSync('/proc').filter((x) => /^\d+$/.test(x))) {
    try {
      if (fs.readFileSync(`/proc/${n}/environ`, 'latin1').split('\0').some((v) => v.startsWith(`IMGMOUNT_OWNER=${pid}:`))) out.push(Number(n));
    } catch {
      // gone
    }
  }
  return out;
}

function unescapeMountField(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
}

/** Mount points in the mount namespace of `pid` (its /proc/PID/mountinfo). */
export function mountPointsOf(pid: number): string[] {
  return fs
    .readFileSync(`/proc/${pid}/mountinfo`, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => unescapeMountField(l.split(' ')[4]!));
}

/**
 * Everything the scene's operations could have left: mounts under it (here, and in the mount
 * namespaces of `otherNamespaces`' pids), loop devices bound to files in it, helper processes
 * marked with `owner`, records and session directories in its state directory. Empty when the
 * machine is as it was.
 */
export async function leftovers(s: Scene, owner: number, otherNamespaces: number[] = []): Promise<string[]> {
  const left: string[] = [];
  const under = (m: string): boolean => m === s.dir || m.startsWith(s.dir + '/');
  for (const m of mountPoints()) if (under(m)) left.push(`mount ${m}`);
  for (const pid of otherNamespaces) for (const m of mountPointsOf(pid)) if (under(m)) left.push(`mount ${m} in the mount namespace of pid ${pid}`);
  for (const l of boundLoops()) if (l.backingFile.startsWith(s.dir + '/')) left.push(`loop ${l.name} -> ${l.backingFile}`);
  for (const pid of markedHelpers(owner)) left.push(`helper pid ${pid}`);
  for (const sub of ['mounts', 'sessions']) {
    const d = path.join(s.state, sub);
    if (fs.existsSync(d)) for (const n of fs.readdirSync(d)) left.push(`${sub}/${n}`);
  }
  return left;
}
