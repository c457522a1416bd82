// The library's cycles, through its public API, as a user writes them:
//  - the main job: init(image) -> image.root(dir, options) -> fs.promises.stat(a file inside)
//    -> root.close() -> image.close();
//  - init(image) + image.close() alone.
// Every root is checked once to be mounted by the driver the row names (kernel: a squashfs on a
// loop device; fuse: squashfuse_ll), so that a change of default shows as an error, not as a
// figure of something else.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { init, type MountedRoot, type RootOptions } from '../../lib';
import type { Workload } from './workload';

/** A root's mounts as "driver:fstype" from the bottom up, e.g. "kernel:tmpfs kernel:squashfs kernel:overlay". */
export function describeRoot(r: MountedRoot): string {
  return r.mounts.map((m) => `${m.driver}:${m.fstype}`).join(' ');
}

export interface RootCycle {
  options: RootOptions;
  /** What describeRoot() must show, checked on the first cycle of every batch. */
  expect: string;
}

/** One batch of the main job: mean microseconds per cycle. */
export async function rootBatch(w: Workload, dir: string, cycles: number, c: RootCycle): Promise<number> {
  const probe = path.join(dir, w.inside);
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < cycles; i++) {
    const image = await init(w.image);
    try {
      const root = await image.root(dir, c.options);
      try {
        await fs.promises.stat(probe);
        if (i === 0 && describeRoot(root) !== c.expect) throw new Error(`root(${JSON.stringify(c.options)}) made ${describeRoot(root)}, not ${c.expect}`);
      } finally {
        await root.close();
      }
    } finally {
      await image.close();
    }
  }
  return Number(process.hrtime.bigint() - t0) / 1000 / cycles;
}

/** init() + close() of the image: mean microseconds per cycle. */
export async function initCloseBatch(w: Workload, cycles: number): Promise<number> {
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < cycles; i++) await (await init(w.image)).close();
  return Number(process.hrtime.bigint() - t0) / 1000 / cycles;
}
