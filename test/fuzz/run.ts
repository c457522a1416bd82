// npm run fuzz -- --runs N [--seed S] [--target init|sif|headers|all] [--path P]
//                 [--hang-ms 10000] [--max-rss-growth-mib 96] [--max-live-growth-mib 16] [--json]
//
// Fast-check over init(), the SIF reader and the superblock checks with mutated real images
// (test/fuzz/targets.ts, test/fuzz/mutate.ts). Every input must give a valid result or a
// typed, documented error, within the documented read bounds; the run must not crash, hang
// or grow. --runs is the total; `all` splits it evenly over the three targets.
//
// Two processes: this supervisor, and a child (--child, with --expose-gc) that fuzzes and
// writes a heartbeat file before each run (run index, target, input). The supervisor reports
// a crash (the child died of a signal or without a report) or a hang (no new run for
// --hang-ms: a run that never settles, or one that blocks the event loop) with the input
// from the heartbeat. The child reports throughput, outcomes by code, the seed, peak RSS and
// memory growth between the end of the warm-up (the first 10% of the first target's runs) and
// the end, both after a full GC, and fails when RSS grew more than --max-rss-growth-mib (96:
// V8 keeps heap pages and malloc keeps freed 2 MiB image buffers, ~20-40 MiB over 100,000
// runs here) or the live heap + external memory (what is still referenced: a leak) more than
// --max-live-growth-mib (16; it stays within a few MiB).
// Exit status: 0 clean, 1 a violation (counterexample and replay command printed), 2 usage.
import { fork } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { ensureGenerated } from '../support/generated';
import { settledMemory, slope } from '../support/memory';
import { generatedDir, repoRoot, sifFixturesDir } from '../support/paths';
import { replayCommand, runFuzz, type FuzzReport } from './harness';
import { documentedCodes, loadCorpus, targets, type TargetName } from './targets';

interface Args {
  runs: number;
  seed: number;
  target: TargetName | 'all';
  path?: string;
  hangMs: number;
  maxRssGrowthMiB: number;
  maxLiveGrowthMiB: number;
  json: boolean;
  child: boolean;
}

function usage(msg: string): never {
  process.stderr.write(`fuzz: ${msg}\nusage: npm run fuzz -- --runs N [--seed S] [--target init|sif|headers|all] [--path P] [--hang-ms MS] [--max-rss-growth-mib M] [--max-live-growth-mib M] [--json]\n`);
  process.exit(2);
}

function parseArgs(argv: string[]): Args {
  const a: Args = { runs: 1000, seed: Math.floor(Math.random() * 2 ** 31), target: 'all', hangMs: 10_000, maxRssGrowthMiB: 96, maxLiveGrowthMiB: 16, json: false, child: false };
  for (let i = 0; i < argv.length; i++) {
    const k = argv[i]!;
    const v = () => argv[++i] ?? usage(`${k} needs a value`);
    const int = (s: string, min: number) => (/^-?\d+$/.test(s) && Number(s) >= min ? Number(s) : usage(`${k}: ${s} is not an integer >= ${min}`));
    if (k === '--runs') a.runs = int(v(), 1);
    else if (k === '--seed') a.seed = int(v(), -(2 ** 31));
    else if (k === '--target') {
      const t = v();
      if (t !== 'all' && !(t in targets)) usage(`unknown target ${t}`);
      a.target = t as Args['target'];
    } else if (k === '--path') a.path = v();
    else if (k === '--hang-ms') a.hangMs = int(v(), 100);
    else if (k === '--max-rss-growth-mib') a.maxRssGrowthMiB = int(v(), 1);
    else if (k === '--max-live-growth-mib') a.maxLiveGrowthMiB = int(v(), 1);
    else if (k === '--json') a.json = true;
    else if (k === '--child') a.child = true;
    else usage(`unknown argument ${k}`);
  }
  if (a.path !== undefined && a.target === 'all') usage('--path replays one target: give --target');
  return a;
}

const MiB = 2 ** 20;
const mib = (n: number) => `${(n / MiB).toFixed(1)} MiB`;



// ---- child: fuzzes, writes the heartbeat, sends its report ----

interface ChildResult {
  reports: FuzzReport[];
  rssWarm: number;
  rssEnd: number;
  /** heapUsed + external after a full GC: what is still referenced (a leak grows it). */
  liveWarm: number;
  liveEnd: number;
  peakRss: number;
  violations: string[];
}

async function child(a: Args): Promise<void> {
  const workDir = process.env.IMGMOUNT_FUZZ_DIR!;
  const heartbeat = fs.openSync(path.join(workDir, 'heartbeat'), 'w');
  const beat = (index: number, target: string, local: number, input: () => string) => {
    // The run counter first (what the supervisor polls), then the input (read after a crash or hang).
    const body = Buffer.from(`${String(index).padStart(12, '0')} ${target} ${local}\n${input()}\n`);
    fs.writeSync(heartbeat, body, 0, body.length, 0);
  };
  ensureGenerated(); // the fixtures, read in place (a fuzz worker is not a test run: no temp dir of its own)
  const corpus = await loadCorpus(sifFixturesDir, generatedDir);
  const documented = documentedCodes(fs.readFileSync(path.join(repoRoot, 'README.md'), 'utf8'));
  const list: TargetName[] = a.target === 'all' ? (Object.keys(targets) as TargetName[]) : [a.target];
  const result: ChildResult = { reports: [], rssWarm: 0, rssEnd: 0, liveWarm: 0, liveEnd: 0, peakRss: 0, violations: [] };
  const selftest = process.env.IMGMOUNT_FUZZ_SELFTEST;
  let offset = 0;
  for (const [k, t] of list.entries()) {
    const runs = Math.floor(a.runs / list.length) + (k < a.runs % list.length ? 1 : 0);
    // Warm-up: a tenth of the runs (JIT, caches, fast-check's own state), then a GC and the baseline.
    const warm = Math.floor(runs / 10);
    const report = await runFuzz(
      {
        target: t,
        runs,
        seed: a.seed,
        hangMs: a.hangMs,
        sampleEvery: Math.max(1, Math.floor(runs / 100)),
        ...(a.path === undefined ? {} : { path: a.path }),
        onRun: async (i, input) => {
          beat(offset + i, t, i, input);
          if (i === warm && k === 0) ({ rss: result.rssWarm, live: result.liveWarm } = await settledMemory());
          // The supervisor's own test (test/unit/harness/fuzz-harness): a crash or a blocked event loop at run 10.
          if (i === 10 && selftest === 'crash') process.kill(process.pid, 'SIGSEGV');
          if (i === 10 && selftest === 'block') for (;;);
        },
      },
      corpus,
      { documented, workDir },
    );
    offset += report.runs;
    result.reports.push(report);
    if (report.failure) break;
  }
  ({ rss: result.rssEnd, live: result.liveEnd } = await settledMemory());
  result.peakRss = process.resourceUsage().maxRSS * 1024;
  if (result.rssWarm === 0) [result.rssWarm, result.liveWarm] = [result.rssEnd, result.liveEnd];
  const growth = result.rssEnd - result.rssWarm;
  const liveGrowth = result.liveEnd - result.liveWarm;
  if (!result.reports.some((r) => r.failure) && a.path === undefined) {
    if (growth > a.maxRssGrowthMiB * MiB) result.violations.push(`memory: RSS grew ${mib(growth)} from the end of the warm-up to the end (bound ${a.maxRssGrowthMiB} MiB)`);
    if (liveGrowth > a.maxLiveGrowthMiB * MiB) result.violations.push(`memory: live heap + external grew ${mib(liveGrowth)} (bound ${a.maxLiveGrowthMiB} MiB): something keeps what each run allocates`);
  }
  process.send!(result);
  fs.closeSync(heartbeat);
}

// ---- supervisor ----

function printReport(a: Args, r: ChildResult): boolean {
  let ok = r.violations.length === 0;
  const total = r.reports.reduce((s, x) => s + x.runs, 0);
  const seconds = r.reports.reduce((s, x) => s + x.seconds, 0);
  const out: string[] = [];
  out.push(`fuzz: ${total} runs in ${seconds.toFixed(1)} s (${(total / seconds).toFixed(0)} runs/s), seed ${a.seed}`);
  for (const rep of r.reports) {
    out.push(`  ${rep.target}: ${rep.runs} runs in ${rep.seconds.toFixed(1)} s (${rep.runsPerSecond.toFixed(0)} runs/s); RSS slope ${((slope(rep.rss.map((x) => [x.run, x.rss])) * 10_000) / 1024).toFixed(1)} KiB per 10k runs`);
    for (const [o, n] of Object.entries(rep.outcomes).sort((x, y) => y[1] - x[1])) out.push(`      ${String(n).padStart(7)}  ${o}`);
    if (rep.failure) {
      ok = false;
      const f = rep.failure;
      out.push(`  VIOLATION (${f.kind}) in ${rep.target}: ${f.message}`, `    counterexample: ${f.counterexample}`, `    seed ${f.seed}, path ${f.path}; replay: ${f.replay}`);
    }
  }
  out.push(`  RSS: ${mib(r.rssWarm)} after warm-up, ${mib(r.rssEnd)} at the end (growth ${mib(r.rssEnd - r.rssWarm)}, bound ${a.maxRssGrowthMiB} MiB); peak ${mib(r.peakRss)}`);
  out.push(`  live heap + external after GC: ${mib(r.liveWarm)} after warm-up, ${mib(r.liveEnd)} at the end (growth ${mib(r.liveEnd - r.liveWarm)}, bound ${a.maxLiveGrowthMiB} MiB)`);
  for (const v of r.violations) out.push(`  VIOLATION ${v}`);
  out.push(ok ? 'fuzz: no violations' : 'fuzz: FAILED');
  if (a.json) process.stdout.write(JSON.stringify({ ...r, ok, seed: a.seed }) + '\n');
  else process.stdout.write(out.join('\n') + '\n');
  return ok;
}

function readHeartbeat(file: string): { index: number; target: string; local: string; input: string } | undefined {
  try {
    const text = fs.readFileSync(file, 'utf8');
    const [first, input] = text.split('\n');
    const [idx, target, local] = first!.split(' ');
    return { index: Number(idx), target: target ?? '?', local: local ?? '?', input: input ?? '' };
  } catch {
    return undefined;
  }
}

async function supervise(a: Args): Promise<number> {
  // The child's files (the images init() opens, the heartbeat) on tmpfs when there is one:
  // sparse files of 2^53 - 1 bytes need a file system that allows them. Removed here, whatever
  // happened to the child.
  const shm = fs.existsSync('/dev/shm') && fs.statfsSync('/dev/shm').type === 0x01021994 ? '/dev/shm' : os.tmpdir();
  const dir = fs.mkdtempSync(path.join(shm, 'imgmount-fuzz-'));
  const hb = path.join(dir, 'heartbeat');
  const argv = process.argv.slice(2);
  const proc = fork(__filename, [...argv, '--child', '--seed', String(a.seed)], {
    execArgv: ['--expose-gc'],
    env: { ...process.env, IMGMOUNT_FUZZ_DIR: dir },
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  let result: ChildResult | undefined;
  proc.on('message', (m) => (result = m as ChildResult));
  let last = -1;
  let since = Date.now();
  let hang: string | undefined;
  const poll = setInterval(() => {
    const h = readHeartbeat(hb);
    if (h && h.index !== last) {
      last = h.index;
      since = Date.now();
    } else if (h && Date.now() - since > a.hangMs + 2000 && !hang) {
      hang = `HANG in ${h.target}: run ${h.local} made no progress for ${a.hangMs} ms\n    input: ${h.input}\n    seed ${a.seed}; replay: ${replayCommand(h.target, a.seed, h.local)}`;
      proc.kill('SIGKILL');
    }
  }, 250);
  const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((r) => proc.once('exit', (c, s) => r([c, s])));
  clearInterval(poll);
  const h = readHeartbeat(hb);
  fs.rmSync(dir, { recursive: true, force: true });
  if (hang) {
    process.stdout.write(`fuzz: ${hang}\nfuzz: FAILED\n`);
    return 1;
  }
  if (!result) {
    process.stdout.write(
      `fuzz: CRASH: the fuzzing process ended (${signal ? `signal ${signal}` : `exit code ${code}`}) without a report` +
        (h ? ` during run ${h.local} of ${h.target}\n    input: ${h.input}\n    seed ${a.seed}; replay: ${replayCommand(h.target, a.seed, h.local)}` : '') +
        '\nfuzz: FAILED\n',
    );
    return 1;
  }
  return printReport(a, result) ? 0 : 1;
}

const args = parseArgs(process.argv.slice(2));
if (args.child) {
  child(args).catch((err: unknown) => {
    process.stderr.write(`fuzz (child): ${(err as Error).stack ?? String(err)}\n`);
    process.exit(1);
  });
} else {
  supervise(args).then((code) => process.exit(code));
}
