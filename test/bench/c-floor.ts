// The C floor: ../shared/bench/loopmount.c, compiled with cc -O2 into the bench's temporary
// directory on every run (never copied into the repository). One batch is one run of the
// program over N cycles of open image -> LOOP_CTL_GET_FREE -> LOOP_CONFIGURE (offset, size
// limit, read-only, autoclear) -> mount(2) ro,nosuid,nodev -> stat a file -> umount2 -> close;
// the figure is the program's own mean per cycle (its start-up is not counted).
//
// For context, a variant compiled from the same source with one line added: LOOP_CONFIGURE
// asks for 4 KiB logical blocks, as the library does for a squashfs on 4 KiB bounds
// (lib/loop/block-size.ts). Row 1 is judged against the floor as given; the variant shows
// what of the library's standing comes from the block size.
import * as fs from 'node:fs';
import { execFileSync } from 'node:child_process';
import * as path from 'node:path';
import type { Workload } from './workload';

export const FLOOR_SOURCE = path.join('bench', 'loopmount.c');

/** Compiles the floor into `tmp` and returns the program's path. */
export function compileFloor(sharedDir: string, tmp: string): string {
  const bin = path.join(tmp, 'loopmount');
  execFileSync('cc', ['-O2', '-o', bin, path.join(sharedDir, FLOOR_SOURCE)], { stdio: ['ignore', 'inherit', 'inherit'] });
  return bin;
}

/** Where the variant sets the block size: right after the loop_config is zeroed. */
const CONFIG_ZEROED = 'memset(&cfg, 0, sizeof cfg);';

/** Compiles the floor with LOOP_CONFIGURE's block_size set to `blockSize` (a copy of the source in `tmp`). */
export function compileFloorWithBlockSize(sharedDir: string, tmp: string, blockSize: number): string {
  const source = fs.readFileSync(path.join(sharedDir, FLOOR_SOURCE), 'utf8');
  if (source.split(CONFIG_ZEROED).length !== 2) throw new Error(`${FLOOR_SOURCE}: no single "${CONFIG_ZEROED}" to set the block size after`);
  const copy = path.join(tmp, `loopmount-bs${blockSize}.c`);
  fs.writeFileSync(copy, source.replace(CONFIG_ZEROED, `${CONFIG_ZEROED} cfg.block_size = ${blockSize};`));
  const bin = path.join(tmp, `loopmount-bs${blockSize}`);
  execFileSync('cc', ['-O2', '-o', bin, copy], { stdio: ['ignore', 'inherit', 'inherit'] });
  return bin;
}

/** One batch of the floor: mean microseconds per cycle. */
export function floorBatch(bin: string, w: Workload, dir: string, cycles: number): number {
  const out = execFileSync(bin, [w.image, String(w.offset), String(w.size), w.fstype, dir, w.inside, String(cycles)], { encoding: 'utf8' });
  const m = /([\d.]+) us\/cycle/.exec(out);
  if (!m) throw new Error(`unexpected output from loopmount: ${out}`);
  return Number(m[1]);
}
