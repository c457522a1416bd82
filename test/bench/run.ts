// npm run bench [-- --quick] [--batches N] [--cycles N] [--concurrency-runs N]
//                  [--concurrent-roots N] [--held-roots N] [--write | --no-write]
//
// Issue 10's table in one run: the path users take (init -> image.root() -> stat -> close ->
// image close, through the public API), each row interleaved with its baseline (the C floor,
// util-linux, bare squashfuse_ll, a plain read), as ratios with medians and spread; then 64
// concurrent roots cold and warm (event-loop delay), then many held roots of one image. Prints
// the table; a full run also writes BENCHMARKS.md and docs/benchmarks/*.svg (charts drawn by
// Vega-Lite from the run's figures).
//
// A program, not a test: a missed target is reported as "missed". Exit status 1 when the bench
// itself fails or leaves anything mounted, bound, running or recorded; 2 for a usage error or
// a machine it cannot run on (it needs root, loop devices, FUSE).
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { capabilities } from '../../lib';
import { SQUASHFS_LOOP_BLOCK_SIZE } from '../../lib/loop/block-size';
import { parseArgs, USAGE, UsageError, type BenchOptions } from './args';
import { initCloseBatch, rootBatch } from './cycles';
import { plainReadBatch, toolBatch, toolFromNodeBatch } from './baselines';
import { compileFloor, compileFloorWithBlockSize, floorBatch } from './c-floor';
import { nodeFloorBatch } from './node-floor';
import { cycleChartSpec, cyclePoints, delayChartSpec, delayPoints, renderSvg } from './charts';
import { concurrencyRun, type ConcurrencyReport } from './concurrency';
import { heldRun } from './held';
import { runRounds, type Measurement } from './interleave';
import { settledLeftovers, snapshot } from './leftovers';
import { describeMachine } from './machine';
import { inPrivateMountNamespace } from './namespace';
import { benchmarksMarkdown, consoleReport } from './report';
import { DELAY_TARGET, buildContextRows, buildRows, type MeasurementId, type Results } from './rows';
import { workload, type Workload } from './workload';

const repoRoot = path.resolve(__dirname, '..', '..', '..');
const sharedDir = path.resolve(process.env.IMGMOUNT_SHARED ?? path.join(repoRoot, '..', 'shared'));
const TMP_VAR = 'IMGMOUNT_BENCH_TMP';
const CHARTS = { cycles: 'docs/benchmarks/cycle-times.svg', delay: 'docs/benchmarks/event-loop-delay.svg' };

const progress = (text: string) => process.stderr.write(text);

/** The interleaved measurements, each next to its baseline(s). */
function measurements(w: Workload, dir: string, floor: string, floor4k: string, cycles: Record<MeasurementId, number>, overlayLayersByFd: boolean): Measurement[] {
  const kernelRoot = { options: {}, expect: 'kernel:squashfs' };
  // An overlay over detached layers is one mount (its layers are not mounts of their own).
  const tmpfsRoot = { options: { writableTmpfs: true }, expect: overlayLayersByFd ? 'kernel:overlay' : 'kernel:tmpfs kernel:squashfs kernel:overlay' };
  const fuseRoot = { options: { driver: 'fuse' as const }, expect: 'fuse:fuse.squashfuse_ll' };
  const all: Record<MeasurementId, () => Promise<number>> = {
    floor: async () => floorBatch(floor, w, dir, cycles.floor),
    floor4k: async () => floorBatch(floor4k, w, dir, cycles.floor4k),
    nodeFloor: () => nodeFloorBatch(w, dir, cycles.nodeFloor),
    main: () => rootBatch(w, dir, cycles.main, kernelRoot),
    tmpfs: () => rootBatch(w, dir, cycles.tmpfs, tmpfsRoot),
    utilLinux: async () => toolBatch('util-linux', w, dir, cycles.utilLinux),
    utilLinuxNode: () => toolFromNodeBatch('util-linux', w, dir, cycles.utilLinuxNode),
    plainRead: () => plainReadBatch(w, cycles.plainRead),
    initClose: () => initCloseBatch(w, cycles.initClose),
    squashfuse: async () => toolBatch('squashfuse', w, dir, cycles.squashfuse),
    fuse: () => rootBatch(w, dir, cycles.fuse, fuseRoot),
    squashfuseNode: () => toolFromNodeBatch('squashfuse', w, dir, cycles.squashfuseNode),
  };
  return (Object.keys(all) as MeasurementId[]).map((id) => ({ id, batch: all[id] }));
}

/** Cycles per batch: the fast cycles get --cycles, the spawning ones half, the sub-millisecond ones five times. */
function cyclesPerBatch(o: BenchOptions): Record<MeasurementId, number> {
  const slow = Math.max(3, Math.round(o.cycles / 2));
  const many = o.cycles * 5;
  return {
    floor: o.cycles, floor4k: o.cycles, nodeFloor: o.cycles, main: o.cycles, tmpfs: o.cycles, utilLinux: slow, utilLinuxNode: slow,
    plainRead: many, initClose: many, squashfuse: slow, fuse: slow, squashfuseNode: slow,
  };
}

async function measure(o: BenchOptions, w: Workload, tmp: string): Promise<Results> {
  const dir = path.join(tmp, 'mnt');
  fs.mkdirSync(dir);
  const floor = compileFloor(sharedDir, tmp);
  const floor4k = compileFloorWithBlockSize(sharedDir, tmp, SQUASHFS_LOOP_BLOCK_SIZE);
  const cycles = cyclesPerBatch(o);
  progress(`bench: ${o.batches} interleaved rounds (and one warm-up) `);
  const { samples, retried } = await runRounds(measurements(w, dir, floor, floor4k, cycles, (await capabilities()).overlayLayersByFd), { rounds: o.batches, onRound: () => progress('.') });
  progress('\n');
  const concurrency: ConcurrencyReport[] = [];
  progress(`bench: ${o.concurrentRoots} concurrent roots, ${o.concurrencyRuns} fresh process(es) `);
  for (let i = 0; i < o.concurrencyRuns; i++) {
    concurrency.push(await concurrencyRun(w, path.join(tmp, 'concurrent'), o.concurrentRoots));
    progress('.');
  }
  progress(`\nbench: ${o.heldRoots} held roots of one image\n`);
  const held = await heldRun(w, path.join(tmp, 'held'), o.heldRoots);
  return { samples, retried, cycles, concurrency, held };
}

function commandLine(argv: readonly string[]): string {
  return argv.length ? `npm run bench -- ${argv.join(' ')}` : 'npm run bench';
}

async function writeOutputs(markdown: string, r: Results): Promise<void> {
  const cycles = await renderSvg(cycleChartSpec(cyclePoints(r.samples)));
  const delay = await renderSvg(delayChartSpec(delayPoints(r.concurrency), DELAY_TARGET, r.concurrency.length));
  fs.mkdirSync(path.join(repoRoot, 'docs', 'benchmarks'), { recursive: true });
  fs.writeFileSync(path.join(repoRoot, CHARTS.cycles), cycles);
  fs.writeFileSync(path.join(repoRoot, CHARTS.delay), delay);
  fs.writeFileSync(path.join(repoRoot, 'BENCHMARKS.md'), markdown);
  progress(`bench: wrote BENCHMARKS.md, ${CHARTS.cycles}, ${CHARTS.delay}\n`);
}

/** In the private mount namespace, with the temporary directory the first run made. */
async function bench(o: BenchOptions, argv: readonly string[], tmp: string): Promise<number> {
  const started = process.hrtime.bigint();
  const loadAtStart = os.loadavg()[0]!;
  const caps = await capabilities();
  const missing = [!caps.root && 'root', !caps.loopControl && '/dev/loop-control', !caps.fuse.available && 'FUSE'].filter(Boolean);
  if (missing.length) {
    process.stderr.write(`bench: needs ${missing.join(', ')} (it mounts for real)\n`);
    return 2;
  }
  const w = await workload(sharedDir, tmp);
  const scope = { image: w.image, tmp, stateDir: process.env.IMGMOUNT_STATE_DIR! };
  const before = snapshot(scope);
  let results: Results | undefined;
  let failure: unknown;
  try {
    results = await measure(o, w, tmp);
  } catch (err) {
    failure = err;
  }
  const left = await settledLeftovers(before, scope);
  if (failure) process.stderr.write(`bench: FAILED: ${(failure as Error).stack ?? String(failure)}\n`);
  if (left.length > 0) process.stderr.write(`bench: FAILED: left behind:\n${left.map((l) => `  ${l}\n`).join('')}`);
  if (!results || failure || left.length > 0) return 1;

  const info = { machine: describeMachine(repoRoot, caps, loadAtStart), workload: w, command: commandLine(argv), batches: o.batches, seconds: Number(process.hrtime.bigint() - started) / 1e9 };
  const rows = buildRows(results, o.concurrentRoots);
  const context = buildContextRows(results);
  process.stdout.write(consoleReport(info, rows, context, results));
  if (o.write) await writeOutputs(benchmarksMarkdown(info, rows, context, results, CHARTS), results);
  return 0;
}

async function main(): Promise<number> {
  const argv = process.argv.slice(2);
  let o: BenchOptions;
  try {
    o = parseArgs(argv);
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    process.stderr.write(`bench: ${err.message}\n${USAGE}\n`);
    return 2;
  }
  if (process.geteuid?.() !== 0) {
    process.stderr.write('bench: needs root (it mounts for real)\n');
    return 2;
  }
  const inherited = process.env[TMP_VAR];
  if (inherited === undefined) {
    // The first run: a temporary directory for everything (state directory, TMPDIR, targets,
    // the compiled floor), then the re-run in a private mount namespace, then removal.
    const tmp = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'imgmount-bench-')));
    fs.mkdirSync(path.join(tmp, 'tmp'));
    try {
      return inPrivateMountNamespace({
        name: 'bench',
        fromVar: 'IMGMOUNT_BENCH_FROM_NS',
        env: { [TMP_VAR]: tmp, IMGMOUNT_STATE_DIR: path.join(tmp, 'state'), TMPDIR: path.join(tmp, 'tmp') },
      })!;
    } finally {
      // The namespace is gone with the re-run, and every mount in it.
      fs.rmSync(tmp, { recursive: true, force: true });
    }
  }
  if (inPrivateMountNamespace({ name: 'bench', fromVar: 'IMGMOUNT_BENCH_FROM_NS' }) !== null) throw new Error('bench: the re-run was not started by the bench');
  return bench(o, argv, inherited);
}

main().then(
  (code) => (process.exitCode = code),
  (err: unknown) => {
    process.stderr.write(`bench: ${(err as Error).stack ?? String(err)}\n`);
    process.exitCode = 1;
  },
);
