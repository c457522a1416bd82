// npm run soak [-- --roots 2000 --concurrency 8 --kinds kernel,fuse,... --json]
//
// Thousands of mixed container roots at once, the way a daemon builds them: each is init() ->
// root() -> read a file (and write one where the root is writable) -> close the root -> close
// the image. The mix, round-robin: kernel; kernel + tmpfs overlay; kernel + a data partition;
// FUSE (squashfuse_ll); FUSE + tmpfs overlay (fuse-overlayfs); FUSE + a data partition
// (fuse2fs). A benchmark-like program, not a test: nothing is timed against a limit.
//
// Two processes, in a private mount namespace set up here (re-exec under `unshare -m
// --propagation private` when in the host's): a worker that builds the roots and measures
// itself (failures by error code, fd and RSS growth with a slope, event-loop delay
// percentiles from perf_hooks.monitorEventLoopDelay, throughput, per-kind latency), and this
// supervisor, which, once the worker has exited, lists what is left (mounts under the soak's
// directory, loop devices bound to its images, helpers marked with the worker's pid, mount
// records, session directories, the library's temporary directories), runs cleanup() (the
// worker is now a dead owner, so anything it left is due) and lists again. The soak has its
// own state directory and TMPDIR under one temporary directory, removed at the end.
//
// Exit status: 0 when no root failed and nothing was left (before or after cleanup), 1 otherwise.
import { fork } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import type { RootOptions } from '../../lib/root/root';
import { gc, settledMemory, slope } from '../support/memory';
import { inPrivateMountNamespace } from './namespace';

const repoRoot = path.resolve(__dirname, '..', '..', '..');
const generatedDir = path.resolve(process.env.IMGMOUNT_FIXTURES ?? path.join(repoRoot, 'test', 'fixtures', 'generated'));

interface Args {
  roots: number;
  concurrency: number;
  /** Kinds of root to mix (default all). */
  kinds: string[];
  json: boolean;
}

function parseArgs(argv: string[]): Args {
  const a: Args = { roots: 2000, concurrency: 8, kinds: KINDS.map((k) => k.name), json: false };
  for (let i = 0; i < argv.length; i++) {
    const k = argv[i]!;
    const num = () => {
      const v = argv[++i];
      if (v === undefined || !/^\d+$/.test(v) || Number(v) < 1) {
        process.stderr.write(`soak: ${k} needs a positive integer\nusage: npm run soak [-- --roots N --concurrency C --kinds K,... --json]\n`);
        process.exit(2);
      }
      return Number(v);
    };
    if (k === '--roots') a.roots = num();
    else if (k === '--concurrency') a.concurrency = num();
    else if (k === '--json') a.json = true;
    else if (k === '--kinds') {
      a.kinds = (argv[++i] ?? '').split(',');
      const unknown = a.kinds.filter((x) => !KINDS.some((y) => y.name === x));
      if (unknown.length || a.kinds.length === 0) {
        process.stderr.write(`soak: unknown kind(s) ${unknown.join(', ')}; kinds: ${KINDS.map((y) => y.name).join(', ')}\n`);
        process.exit(2);
      }
    }
    else if (k !== '--worker') {
      process.stderr.write(`soak: unknown argument ${k}\nusage: npm run soak [-- --roots N --concurrency C --kinds K,... --json]\n`);
      process.exit(2);
    }
  }
  return a;
}

/** The kinds of root, in round-robin order. */
const KINDS: Array<{ name: string; options: RootOptions; data?: boolean; writable?: boolean }> = [
  { name: 'kernel', options: { driver: 'kernel' } },
  { name: 'kernel+tmpfs', options: { driver: 'kernel', writableTmpfs: true, tmpfsSize: '4m' }, writable: true },
  { name: 'kernel+data', options: { driver: 'kernel', data: [{ partition: 'data', path: '/data' }] }, data: true },
  { name: 'fuse', options: { driver: 'fuse' } },
  { name: 'fuse+overlay', options: { driver: 'fuse', writableTmpfs: true, tmpfsSize: '4m' }, writable: true },
  { name: 'fuse+data', options: { driver: 'fuse', data: [{ partition: 'data', path: '/data' }] }, data: true },
];

const HELLO = 'hello from imgmount\n';

// ---- worker ----

interface Sample {
  done: number;
  fds: number;
  rss: number;
  /** heapUsed + external (no GC forced: includes garbage not yet collected). */
  live: number;
}

export interface WorkerReport {
  pid: number;
  roots: number;
  concurrency: number;
  seconds: number;
  ok: number;
  /** Error code (or kind of mismatch) -> count. */
  failures: Record<string, number>;
  /** First message seen per failure code. */
  examples: Record<string, string>;
  /** Per kind: count, mean, p50, p99, max latency in ms. */
  latency: Record<string, { n: number; mean: number; p50: number; p99: number; max: number }>;
  eventLoopDelayMs: { p50: number; p99: number; max: number; mean: number };
  /** Open fds before the first root and after the last (both with nothing in flight), and the slope while roots ran. */
  fds: { before: number; end: number; slopePer1000: number };
  /** RSS and live memory (heapUsed + external) after a full GC at the end of the warm-up and at the end; slopes over the samples. */
  rss: { warm: number; end: number; peak: number; slopePer1000: number };
  live: { warm: number; end: number; slopePer1000: number };
  samples: Sample[];
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}


const ELD_RESOLUTION_MS = 1;

const openFds = () => fs.readdirSync('/proc/self/fd').length;


async function worker(a: Args, work: string): Promise<void> {
  // The library is loaded here, after the environment (state directory, TMPDIR) is set.
  const { init } = await import('../../lib/image/init');
  const { root } = await import('../../lib/root/root');
  const image = path.join(work, 'images', 'image.sif');
  const targets = path.join(work, 'targets');
  const kinds = KINDS.filter((k) => a.kinds.includes(k.name));
  const fdsBefore = openFds();
  const report: WorkerReport = {
    pid: process.pid,
    roots: a.roots,
    concurrency: a.concurrency,
    seconds: 0,
    ok: 0,
    failures: {},
    examples: {},
    latency: {},
    eventLoopDelayMs: { p50: 0, p99: 0, max: 0, mean: 0 },
    fds: { before: fdsBefore, end: 0, slopePer1000: 0 },
    rss: { warm: 0, end: 0, peak: 0, slopePer1000: 0 },
    live: { warm: 0, end: 0, slopePer1000: 0 },
    samples: [],
  };
  const times: Record<string, number[]> = {};
  const fail = (code: string, message: string) => {
    report.failures[code] = (report.failures[code] ?? 0) + 1;
    report.examples[code] ??= message;
  };

  /** Each slot's target; after a failure the slot moves to a new one, so that what the failure left stays apart. */
  const slotTarget = Array.from({ length: a.concurrency }, (_, s) => path.join(targets, `t${s}`));
  let moved = 0;

  async function one(i: number, slot: number): Promise<boolean> {
    const kind = kinds[i % kinds.length]!;
    const target = slotTarget[slot]!;
    const t0 = process.hrtime.bigint();
    try {
      const img = await init(image);
      try {
        const r = await root(img, target, kind.options);
        try {
          const got = await fs.promises.readFile(path.join(target, 'etc', 'hello.txt'), 'utf8');
          if (got !== HELLO) fail('CONTENT_MISMATCH', `${kind.name}: etc/hello.txt is ${JSON.stringify(got)}`);
          if (kind.data) {
            const inData = await fs.promises.readFile(path.join(target, 'data', 'etc', 'hello.txt'), 'utf8');
            if (inData !== HELLO) fail('CONTENT_MISMATCH', `${kind.name}: data/etc/hello.txt is ${JSON.stringify(inData)}`);
          }
          if (kind.writable) {
            const f = path.join(target, 'tmp', `soak-${i}`);
            await fs.promises.writeFile(f, String(i));
            if ((await fs.promises.readFile(f, 'utf8')) !== String(i)) fail('CONTENT_MISMATCH', `${kind.name}: a file written does not read back`);
          }
        } finally {
          await r.close();
        }
      } finally {
        await img.close();
      }
      report.ok++;
      return true;
    } catch (err) {
      const code = (err as { code?: unknown }).code;
      fail(typeof code === 'string' ? code : `untyped ${(err as Error).name ?? typeof err}`, `${kind.name}: ${(err as Error).message ?? String(err)}`);
      slotTarget[slot] = path.join(targets, `t${slot}-${++moved}`);
      fs.mkdirSync(slotTarget[slot]!);
      return false;
    } finally {
      (times[kind.name] ??= []).push(Number(process.hrtime.bigint() - t0) / 1e6);
    }
  }

  for (const t of slotTarget) fs.mkdirSync(t, { recursive: true });
  // Node records the whole interval between samples: the delay is what exceeds the resolution.
  const eld = monitorEventLoopDelay({ resolution: ELD_RESOLUTION_MS });
  const warmAt = Math.max(a.concurrency * KINDS.length, Math.floor(a.roots / 20));
  const every = Math.max(1, Math.floor(a.roots / 200));
  let next = 0;
  let done = 0;
  const t0 = process.hrtime.bigint();
  eld.enable();
  await Promise.all(
    Array.from({ length: a.concurrency }, async (_, slot) => {
      for (let i = next++; i < a.roots; i = next++) {
        await one(i, slot);
        done++;
        if (done === warmAt) {
          // A full GC (not counted as event-loop delay: it is ours), with the other slots' roots in flight.
          eld.disable();
          gc();
          gc();
          const m = process.memoryUsage();
          [report.rss.warm, report.live.warm] = [m.rss, m.heapUsed + m.external];
          eld.enable();
        }
        if (done % every === 0) {
          const m = process.memoryUsage();
          report.samples.push({ done, fds: openFds(), rss: m.rss, live: m.heapUsed + m.external });
        }
      }
    }),
  );
  eld.disable();
  report.seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  const ms = (ns: number) => Math.max(0, ns / 1e6 - ELD_RESOLUTION_MS);
  report.eventLoopDelayMs = { p50: ms(eld.percentile(50)), p99: ms(eld.percentile(99)), max: ms(eld.max), mean: ms(eld.mean) };
  for (const [k, xs] of Object.entries(times)) {
    const s = [...xs].sort((x, y) => x - y);
    report.latency[k] = { n: s.length, mean: s.reduce((x, y) => x + y, 0) / s.length, p50: percentile(s, 50), p99: percentile(s, 99), max: s[s.length - 1]! };
  }
  report.fds.end = openFds();
  ({ rss: report.rss.end, live: report.live.end } = await settledMemory());
  report.rss.peak = process.resourceUsage().maxRSS * 1024;
  const after = report.samples.filter((x) => x.done >= warmAt);
  report.fds.slopePer1000 = slope(after.map((x) => [x.done, x.fds])) * 1000;
  report.rss.slopePer1000 = slope(after.map((x) => [x.done, x.rss])) * 1000;
  report.live.slopePer1000 = slope(after.map((x) => [x.done, x.live])) * 1000;
  if (report.rss.warm === 0) [report.rss.warm, report.live.warm] = [report.rss.end, report.live.end];
  // Then exit, as a daemon would: whatever is still held is a leak the supervisor finds.
  process.send!(report, () => process.exit(0));
}

// ---- supervisor ----

const HELPERS = new Set(['squashfuse', 'squashfuse_ll', 'fuse2fs', 'gocryptfs', 'fuse-overlayfs', 'fusermount3']);

function unescapeMount(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
}

function within(p: string, dir: string): boolean {
  return p === dir || p.startsWith(dir + '/');
}

/** Everything the worker could have left (empty when the machine is as it was). */
function leftovers(work: string, workerPid: number): string[] {
  const left: string[] = [];
  for (const line of fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n').filter(Boolean)) {
    const mp = unescapeMount(line.split(' ')[4]!);
    if (within(mp, work)) left.push(`mount ${mp}`);
  }
  for (const name of fs.readdirSync('/sys/block').filter((n) => /^loop\d+$/.test(n))) {
    try {
      const backing = fs.readFileSync(`/sys/block/${name}/loop/backing_file`, 'utf8').trim().replace(/ \(deleted\)$/, '');
      if (within(backing, work)) left.push(`loop device /dev/${name} bound to ${backing}`);
    } catch {
      // not bound
    }
  }
  for (const pid of fs.readdirSync('/proc').filter((n) => /^\d+$/.test(n))) {
    try {
      const env = fs.readFileSync(`/proc/${pid}/environ`, 'latin1').split('\0');
      const comm = fs.readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
      const marked = env.some((v) => v.startsWith(`IMGMOUNT_OWNER=${workerPid}:`));
      const ppid = Number(/^PPid:\s+(\d+)/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1]);
      if (marked || (HELPERS.has(comm) && ppid === workerPid)) left.push(`helper process ${pid} (${comm})`);
    } catch {
      // gone meanwhile
    }
  }
  for (const [sub, what] of [
    ['state/mounts', 'mount record'],
    ['state/sessions', 'session directory'],
    ['tmp', 'temporary file'],
  ] as const) {
    const d = path.join(work, sub);
    if (fs.existsSync(d)) for (const n of fs.readdirSync(d)) left.push(`${what} ${path.join(d, n)}`);
  }
  return left;
}

const MiB = 2 ** 20;
const f1 = (n: number) => n.toFixed(1);

function print(a: Args, r: WorkerReport | undefined, crash: string | undefined, before: string[], cleanupSummary: string, after: string[]): boolean {
  const out: string[] = [];
  let ok = true;
  if (crash) {
    ok = false;
    out.push(`soak: WORKER FAILED: ${crash}`);
  }
  if (r) {
    const failed = Object.values(r.failures).reduce((s, n) => s + n, 0);
    if (failed > 0) ok = false;
    out.push(`soak: ${r.roots} roots at concurrency ${r.concurrency} in ${f1(r.seconds)} s: ${f1(r.roots / r.seconds)} roots/s; ${r.ok} ok, ${failed} failed`);
    for (const [code, n] of Object.entries(r.failures)) out.push(`  failure ${code}: ${n} (e.g. ${r.examples[code]})`);
    for (const [k, l] of Object.entries(r.latency)) out.push(`  ${k.padEnd(13)} ${String(l.n).padStart(6)} roots  mean ${f1(l.mean)} ms  p50 ${f1(l.p50)}  p99 ${f1(l.p99)}  max ${f1(l.max)}`);
    out.push(`  event-loop delay (beyond the ${ELD_RESOLUTION_MS} ms sampling interval): p50 ${f1(r.eventLoopDelayMs.p50)} ms, p99 ${f1(r.eventLoopDelayMs.p99)} ms, max ${f1(r.eventLoopDelayMs.max)} ms, mean ${f1(r.eventLoopDelayMs.mean)} ms`);
    out.push(`  fds: ${r.fds.before} before the first root, ${r.fds.end} after the last (growth ${r.fds.end - r.fds.before}; slope while running ${r.fds.slopePer1000.toFixed(2)} per 1000 roots)`);
    out.push(`  RSS: ${f1(r.rss.warm / MiB)} MiB after warm-up, ${f1(r.rss.end / MiB)} MiB at the end (growth ${f1((r.rss.end - r.rss.warm) / MiB)} MiB; slope ${f1(r.rss.slopePer1000 / MiB)} MiB per 1000 roots); peak ${f1(r.rss.peak / MiB)} MiB`);
    out.push(`  live heap + external after GC: ${f1(r.live.warm / MiB)} MiB after warm-up, ${f1(r.live.end / MiB)} MiB at the end (growth ${f1((r.live.end - r.live.warm) / MiB)} MiB; slope ${f1(r.live.slopePer1000 / MiB)} MiB per 1000 roots)`);
    if (r.fds.end !== r.fds.before) {
      ok = false;
      out.push(`  LEAK: ${r.fds.end - r.fds.before} fd(s) more open at the end than before the first root`);
    }
  }
  out.push(`  left at the end: ${before.length === 0 ? 'nothing' : ''}`, ...before.map((l) => `    ${l}`));
  out.push(`  cleanup(): ${cleanupSummary}`);
  out.push(`  left after cleanup(): ${after.length === 0 ? 'nothing' : ''}`, ...after.map((l) => `    ${l}`));
  if (before.length > 0 || after.length > 0) ok = false;
  out.push(ok ? 'soak: ok' : 'soak: FAILED');
  if (a.json) process.stdout.write(JSON.stringify({ ok, report: r, crash, leftBefore: before, cleanup: cleanupSummary, leftAfter: after }) + '\n');
  else process.stdout.write(out.join('\n') + '\n');
  return ok;
}

async function supervise(a: Args): Promise<number> {
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'imgmount-soak-'));
  try {
    fs.mkdirSync(path.join(work, 'images'));
    fs.mkdirSync(path.join(work, 'tmp'));
    const sif = path.join(generatedDir, 'sif-kernel.sif');
    if (!fs.existsSync(sif)) throw new Error(`${sif} is missing: run node dist/scripts/make-fixtures.js`);
    // Our own copy, owned by root and writable by nobody else (the kernel may parse it).
    fs.copyFileSync(sif, path.join(work, 'images', 'image.sif'));
    fs.chmodSync(path.join(work, 'images', 'image.sif'), 0o644);
    const env = { ...process.env, IMGMOUNT_STATE_DIR: path.join(work, 'state'), TMPDIR: path.join(work, 'tmp') };
    Object.assign(process.env, { IMGMOUNT_STATE_DIR: env.IMGMOUNT_STATE_DIR, TMPDIR: env.TMPDIR });
    const child = fork(__filename, [...process.argv.slice(2), '--worker'], { env: { ...env, IMGMOUNT_SOAK_WORK: work }, execArgv: ['--expose-gc'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    let report: WorkerReport | undefined;
    child.on('message', (m) => (report = m as WorkerReport));
    const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((r) => child.once('exit', (c, s) => r([c, s])));
    const crash = report ? undefined : `the worker ended (${signal ? `signal ${signal}` : `exit code ${code}`}) without a report`;
    // A helper that is stopping, an autoclear loop device: the kernel settles asynchronously.
    let before = leftovers(work, child.pid!);
    for (let i = 0; i < 20 && before.length > 0; i++) {
      await new Promise((r) => setTimeout(r, 100));
      before = leftovers(work, child.pid!);
    }
    const { cleanup } = await import('../../lib/root/cleanup');
    const c = await cleanup();
    const summary =
      `${c.swept.length} record(s) swept, ${c.kept.length} kept, ${c.invalid.length} invalid, ${c.orphans.length} orphan helper(s) stopped, ${c.temps.length} temporary record(s) removed` +
      c.swept.flatMap((e) => e.errors.map((x) => `; error for ${e.target}: ${x}`)).join('');
    let after = leftovers(work, child.pid!);
    for (let i = 0; i < 20 && after.length > 0; i++) {
      await new Promise((r) => setTimeout(r, 100));
      after = leftovers(work, child.pid!);
    }
    return print(a, report, crash, before, summary, after) ? 0 : 1;
  } finally {
    // Never recursive through a mount: only when nothing is mounted below it any more.
    const mounted = fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n').some((l) => l && within(unescapeMount(l.split(' ')[4]!), work));
    if (!mounted) fs.rmSync(work, { recursive: true, force: true });
    else process.stderr.write(`soak: ${work} kept: something is still mounted below it\n`);
  }
}

async function main(): Promise<number> {
  const a = parseArgs(process.argv.slice(2));
  if (process.argv.includes('--worker')) {
    await worker(a, process.env.IMGMOUNT_SOAK_WORK!);
    return 0;
  }
  if (process.geteuid?.() !== 0 || !fs.existsSync('/dev/loop-control')) {
    process.stderr.write('soak: needs root and /dev/loop-control (it mounts for real)\n');
    return 2;
  }
  // Always a mount namespace of our own, made here (test/bench/namespace.ts says why).
  let status: number | null;
  try {
    status = inPrivateMountNamespace({ name: 'soak', fromVar: 'IMGMOUNT_SOAK_FROM_NS' });
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n`);
    return 2;
  }
  if (status !== null) return status;
  return supervise(a);
}

main().then(
  (code) => (process.exitCode = code),
  (err: unknown) => {
    process.stderr.write(`soak: ${(err as Error).stack ?? String(err)}\n`);
    process.exitCode = 1;
  },
);
