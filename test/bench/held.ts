// Many read-only roots of one image held at once, each on its own target, the way a daemon
// runs many containers of one image: one init(), then image.root(target_i, { shareLoopDevice:
// true }) one after the other, all kept until the last is made, then closed. The option asks
// read-only roots of one partition to share one loop device (issue 10); where the library
// does not know it yet, it is ignored and every root takes a loop device of its own, which
// shows as loop devices used = roots made, and as ERR_LOOP_NO_FREE_DEVICE past the limit.
//
// Measured in a fresh node process run with --expose-gc: failures by code, the first root that
// failed, loop devices bound to the image (sysfs) and distinct loop devices the roots name,
// and RSS after full GCs before the first root (after one root made and closed, so that the
// code is loaded) and with all of them held.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { init, type MountedRoot, type RootOptions } from '../../lib';
import { settledMemory } from '../support/memory';
import { boundLoops } from '../support/leaks';
import { runWorker, workerMain } from './worker-process';
import type { Workload } from './workload';

export interface HeldReport {
  asked: number;
  held: number;
  failures: Record<string, number>;
  examples: Record<string, string>;
  /** Index of the first root that failed (null: none did). */
  firstFailure: number | null;
  /** Loop devices bound to the image while the roots were held (sysfs). */
  loopDevicesBound: number;
  /** Distinct loop devices the held roots' mounts name. */
  loopDevicesNamed: number;
  rssBefore: number;
  rssHeld: number;
  /** Seconds to make them all, and to close them all. */
  makeSeconds: number;
  closeSeconds: number;
}

/** The option this row asks for; the cast lets the bench compile against a library without it. */
export const SHARE_OPTIONS = { shareLoopDevice: true } as RootOptions;

interface WorkerArgs {
  workload: Workload;
  dir: string;
  roots: number;
}

async function worker(a: WorkerArgs): Promise<HeldReport> {
  const targets = Array.from({ length: a.roots }, (_, i) => path.join(a.dir, `h${i}`));
  for (const t of targets) fs.mkdirSync(t, { recursive: true });
  const image = await init(a.workload.image);
  const roots: MountedRoot[] = [];
  const r: HeldReport = {
    asked: a.roots, held: 0, failures: {}, examples: {}, firstFailure: null,
    loopDevicesBound: 0, loopDevicesNamed: 0, rssBefore: 0, rssHeld: 0, makeSeconds: 0, closeSeconds: 0,
  };
  try {
    await (await image.root(targets[0]!, SHARE_OPTIONS)).close();
    r.rssBefore = (await settledMemory()).rss;
    let t0 = process.hrtime.bigint();
    for (const [i, t] of targets.entries()) {
      try {
        roots.push(await image.root(t, SHARE_OPTIONS));
      } catch (err) {
        const code = String((err as { code?: unknown }).code ?? (err as Error).name);
        r.failures[code] = (r.failures[code] ?? 0) + 1;
        r.examples[code] ??= (err as Error).message;
        r.firstFailure ??= i;
      }
    }
    r.makeSeconds = Number(process.hrtime.bigint() - t0) / 1e9;
    r.held = roots.length;
    r.loopDevicesBound = boundLoops().filter((l) => l.backingFile === a.workload.image).length;
    r.loopDevicesNamed = new Set(roots.flatMap((x) => x.mounts.map((m) => m.loopDevice).filter((d) => d !== null))).size;
    r.rssHeld = (await settledMemory()).rss;
    t0 = process.hrtime.bigint();
    for (const x of roots.splice(0).reverse()) await x.close();
    r.closeSeconds = Number(process.hrtime.bigint() - t0) / 1e9;
  } finally {
    for (const x of roots.reverse()) await x.close().catch(() => undefined);
    await image.close();
  }
  return r;
}

/** The measurement in a fresh node process with a full GC at hand. */
export function heldRun(workload: Workload, dir: string, roots: number): Promise<HeldReport> {
  return runWorker<WorkerArgs, HeldReport>(__filename, { workload, dir, roots }, ['--expose-gc']);
}

workerMain(module, 'held-roots', worker);

