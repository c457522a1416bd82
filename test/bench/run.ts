// One mount cycle, imgmount against the C floor (../shared/bench/loopmount.c), same image,
// same partition, same process tree: attach (offset + size limit, read-only, autoclear) ->
// mount ro,nosuid,nodev -> stat a file inside -> umount -> release.
//
// Batches of the C program and of our cycle alternate; each batch gives a mean per cycle and
// the report is the median over batches (plus the ratio). Needs root and loop devices; it
// re-runs itself under `unshare -m --propagation private` so nothing can leak to the host.
//
//   npm run bench [-- --batches 60 --cycles 20]
import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { FuseDriver } from '../../lib/drivers/fuse';
import { kernelMountFunc } from '../../lib/drivers/kernel';
import { MS_NODEV, MS_NOSUID, MS_RDONLY, mountPartition, type MountPartitionOptions } from '../../lib/mount';

const repoRoot = path.resolve(__dirname, '..', '..', '..');
const sharedDir = path.resolve(process.env.IMGMOUNT_SHARED ?? path.join(repoRoot, '..', 'shared'));

function arg(name: string, dflt: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : dflt;
}

function inInitMountNamespace(): boolean {
  try {
    return fs.readlinkSync('/proc/self/ns/mnt') === fs.readlinkSync('/proc/1/ns/mnt');
  } catch {
    return false;
  }
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

interface Workload {
  image: string;
  offset: number;
  size: number;
  fstype: string;
  inside: string;
}

function workload(tmp: string): Workload {
  const sif = path.join(sharedDir, 'fixtures', 'sif', 'apptainer', 'busybox_amd64.sif');
  if (fs.existsSync(sif)) return { image: sif, offset: 45056, size: 745472, fstype: 'squashfs', inside: 'bin/busybox' };
  // No fixture: a squashfs of one file behind a 32 KiB header.
  const tree = path.join(tmp, 'tree');
  fs.mkdirSync(path.join(tree, 'bin'), { recursive: true });
  fs.writeFileSync(path.join(tree, 'bin', 'file'), 'x'.repeat(100_000));
  const sq = path.join(tmp, 'p.sqfs');
  execFileSync('mksquashfs', [tree, sq, '-noappend', '-all-root', '-quiet', '-no-progress']);
  const body = fs.readFileSync(sq);
  const image = path.join(tmp, 'image.sif');
  fs.writeFileSync(image, Buffer.concat([Buffer.alloc(32768), body]));
  return { image, offset: 32768, size: body.length, fstype: 'squashfs', inside: 'bin/file' };
}

async function ourBatch(w: Workload, dir: string, cycles: number, opts: Partial<MountPartitionOptions>, asyncStat: boolean): Promise<number> {
  const probe = path.join(dir, w.inside);
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < cycles; i++) {
    const m = await mountPartition(w.image, dir, { fstype: w.fstype, offset: w.offset, sizeLimit: w.size, ...opts });
    if (asyncStat) await fs.promises.stat(probe);
    else fs.statSync(probe);
    await m.unmount();
  }
  return Number(process.hrtime.bigint() - t0) / 1000 / cycles;
}

/** The same cycle through the FUSE driver: squashfuse_ll with a passed /dev/fuse fd, then unmount and stop. */
async function fuseBatch(w: Workload, dir: string, cycles: number): Promise<number> {
  const probe = path.join(dir, w.inside);
  const driver = new FuseDriver();
  await driver.start({ sessionPath: '', usernsFd: -1, fuseFd: -1 });
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < cycles; i++) {
    const m = await driver.mount(
      { source: w.image, target: dir, filesystem: w.fstype, flags: MS_RDONLY | MS_NOSUID | MS_NODEV, offset: w.offset, size: w.size, fsOptions: [] },
      kernelMountFunc,
    );
    fs.statSync(probe);
    await m.close();
  }
  const us = Number(process.hrtime.bigint() - t0) / 1000 / cycles;
  await driver.stop('');
  return us;
}

function cBatch(bin: string, w: Workload, dir: string, cycles: number): number {
  const out = execFileSync(bin, [w.image, String(w.offset), String(w.size), w.fstype, dir, w.inside, String(cycles)], { encoding: 'utf8' });
  const m = /([\d.]+) us\/cycle/.exec(out);
  if (!m) throw new Error(`unexpected output from loopmount: ${out}`);
  return Number(m[1]);
}

async function main(): Promise<void> {
  if (process.geteuid?.() !== 0 || !fs.existsSync('/dev/loop-control')) {
    console.log('bench: needs root and /dev/loop-control; skipped');
    return;
  }
  if (inInitMountNamespace() && !process.env.IMGMOUNT_BENCH_NO_UNSHARE) {
    const r = spawnSync('unshare', ['-m', '--propagation', 'private', process.execPath, __filename, ...process.argv.slice(2)], {
      stdio: 'inherit',
      env: { ...process.env, IMGMOUNT_BENCH_NO_UNSHARE: '1' },
    });
    process.exitCode = r.status ?? 1;
    return;
  }
  const batches = arg('batches', 60);
  const cycles = arg('cycles', 20);
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'imgmount-bench-'));
  process.env.IMGMOUNT_STATE_DIR ??= path.join(tmp, 'state');
  try {
    const bin = path.join(tmp, 'loopmount');
    execFileSync('cc', ['-O2', '-o', bin, path.join(sharedDir, 'bench', 'loopmount.c')]);
    const w = workload(tmp);
    const dir = path.join(tmp, 'mnt');
    fs.mkdirSync(dir);

    const variants: Array<{ name: string; run: () => Promise<number> }> = [
      { name: 'C floor (loopmount.c: LOOP_CONFIGURE + mount(2))', run: async () => cBatch(bin, w, dir, cycles) },
      { name: 'imgmount mountPartition, new mount API', run: () => ourBatch(w, dir, cycles, {}, false) },
      { name: 'imgmount mountPartition, mount(2)', run: () => ourBatch(w, dir, cycles, { api: 'legacy' }, false) },
      { name: 'imgmount mountPartition, new API, async stat', run: () => ourBatch(w, dir, cycles, {}, true) },
      // FUSE is an order of magnitude slower (a helper process per mount): fewer cycles.
      { name: 'imgmount FUSE driver (squashfuse_ll, fd passing)', run: () => fuseBatch(w, dir, Math.max(1, Math.floor(cycles / 4))) },
    ];
    // Warm-up: page cache, probes, JIT.
    for (const v of variants) await v.run();
    const samples = variants.map(() => [] as number[]);
    for (let b = 0; b < batches; b++) for (let i = 0; i < variants.length; i++) samples[i]!.push(await variants[i]!.run());

    const floor = median(samples[0]!);
    console.log(`imgmount bench ${new Date().toISOString()} — kernel ${os.release()}, node ${process.version}, ${os.cpus().length} x ${os.cpus()[0]?.model ?? 'cpu'}`);
    console.log(`image ${w.image} offset ${w.offset} size ${w.size} (${w.fstype}), stat ${w.inside}`);
    console.log(`${batches} batches x ${cycles} cycles each; median of batch means:`);
    for (let i = 0; i < variants.length; i++) {
      const med = median(samples[i]!);
      console.log(`  ${variants[i]!.name.padEnd(50)} ${med.toFixed(1).padStart(8)} us/cycle   ratio ${(med / floor).toFixed(2)}x`);
    }
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
