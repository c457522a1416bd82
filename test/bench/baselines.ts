// What a user would do without imgmount, each the fastest honest way with the tool:
//  - util-linux: `mount -o loop,offset=,sizelimit=,ro,nosuid,nodev IMAGE DIR`, stat, `umount DIR`
//    (autoclear detaches the loop device);
//  - squashfuse: `squashfuse_ll -o ro,offset= IMAGE DIR` (it returns once the mount is up and
//    the daemon serves it), stat, `fusermount3 -u DIR`;
// each spawned per cycle by one `sh` loop per batch (the stat is the shell's own `[ -e ]`, no
// process), so a cycle costs the tools and one fork+exec each, nothing of Node's. The same
// cycles spawned from Node (child_process.execFile, awaited), as a Node daemon would spawn them,
// are measured too, for context. And the plain read that init() + close() is compared with:
// fs.promises open + read of 64 KiB at offset 0 + close.
import { execFile, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { promisify } from 'node:util';
import type { Workload } from './workload';

const execFileP = promisify(execFile);

const UTIL_LINUX_LOOP = `
img=$1 off=$2 size=$3 dir=$4 probe=$5 n=$6 i=0
while [ "$i" -lt "$n" ]; do
  mount -o "loop,offset=$off,sizelimit=$size,ro,nosuid,nodev" "$img" "$dir" || exit 1
  [ -e "$probe" ] || { echo "bench: $probe is missing" >&2; umount "$dir"; exit 1; }
  umount "$dir" || exit 1
  i=$((i + 1))
done`;

const SQUASHFUSE_LOOP = `
img=$1 off=$2 size=$3 dir=$4 probe=$5 n=$6 i=0
while [ "$i" -lt "$n" ]; do
  squashfuse_ll -o "ro,offset=$off" "$img" "$dir" || exit 1
  [ -e "$probe" ] || { echo "bench: $probe is missing" >&2; fusermount3 -u "$dir"; exit 1; }
  fusermount3 -u "$dir" || exit 1
  i=$((i + 1))
done`;

export type Tool = 'util-linux' | 'squashfuse';

const LOOPS: Record<Tool, string> = { 'util-linux': UTIL_LINUX_LOOP, squashfuse: SQUASHFUSE_LOOP };

/** One batch of the tool's cycle spawned by a shell loop: mean microseconds per cycle (the shell's start included, once per batch). */
export function toolBatch(tool: Tool, w: Workload, dir: string, cycles: number): number {
  const t0 = process.hrtime.bigint();
  const r = spawnSync('sh', ['-c', LOOPS[tool], 'sh', w.image, String(w.offset), String(w.size), dir, path.join(dir, w.inside), String(cycles)], {
    stdio: ['ignore', 'ignore', 'pipe'],
    encoding: 'utf8',
  });
  const us = Number(process.hrtime.bigint() - t0) / 1000 / cycles;
  if (r.error) throw r.error;
  if (r.status !== 0) throw new Error(`the ${tool} loop failed (status ${r.status}): ${r.stderr.trim()}`);
  return us;
}

/** The same cycle with each program spawned from Node (execFile, awaited) and the stat by fs.promises. */
export async function toolFromNodeBatch(tool: Tool, w: Workload, dir: string, cycles: number): Promise<number> {
  const probe = path.join(dir, w.inside);
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < cycles; i++) {
    if (tool === 'util-linux') await execFileP('mount', ['-o', `loop,offset=${w.offset},sizelimit=${w.size},ro,nosuid,nodev`, w.image, dir]);
    else await execFileP('squashfuse_ll', ['-o', `ro,offset=${w.offset}`, w.image, dir]);
    await fs.promises.stat(probe);
    await execFileP(tool === 'util-linux' ? 'umount' : 'fusermount3', tool === 'util-linux' ? [dir] : ['-u', dir]);
  }
  return Number(process.hrtime.bigint() - t0) / 1000 / cycles;
}

export const PLAIN_READ_BYTES = 64 * 1024;

/** fs.promises open + read(64 KiB at 0) + close of the image: mean microseconds per cycle. */
export async function plainReadBatch(w: Workload, cycles: number): Promise<number> {
  const buf = Buffer.alloc(PLAIN_READ_BYTES);
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < cycles; i++) {
    const fh = await fs.promises.open(w.image, 'r');
    await fh.read(buf, 0, buf.length, 0);
    await fh.close();
  }
  return Number(process.hrtime.bigint() - t0) / 1000 / cycles;
}
