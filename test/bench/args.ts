// Command line of npm run bench. Pure (test/unit/harness/bench-helpers.test.ts).

export interface BenchOptions {
  /** Measured rounds; each runs one batch of every variant and baseline, alternating. */
  batches: number;
  /** Cycles per batch of the fast variants (the C floor, the kernel roots); others scale from it. */
  cycles: number;
  /** Fresh node processes for the 64-roots measurement (each a cold round, then a warm one). */
  concurrencyRuns: number;
  /** Roots started at once in that measurement. */
  concurrentRoots: number;
  /** Roots of one image held at once. */
  heldRoots: number;
  /** Write BENCHMARKS.md and docs/benchmarks/*.svg (default: on for a full run, off with --quick). */
  write: boolean;
  quick: boolean;
}

export const USAGE =
  'usage: npm run bench [-- --quick] [--batches N] [--cycles N] [--concurrency-runs N] [--concurrent-roots N] [--held-roots N] [--write | --no-write]';

export const FULL: Omit<BenchOptions, 'write' | 'quick'> = { batches: 100, cycles: 20, concurrencyRuns: 8, concurrentRoots: 64, heldRoots: 500 };
export const QUICK: Omit<BenchOptions, 'write' | 'quick'> = { batches: 6, cycles: 6, concurrencyRuns: 1, concurrentRoots: 64, heldRoots: 500 };

export class UsageError extends Error {}

const NUMERIC: Record<string, keyof Omit<BenchOptions, 'write' | 'quick'>> = {
  '--batches': 'batches',
  '--cycles': 'cycles',
  '--concurrency-runs': 'concurrencyRuns',
  '--concurrent-roots': 'concurrentRoots',
  '--held-roots': 'heldRoots',
};

/** Options from argv (without node and the script); --quick sets the defaults the other flags then override. */
export function parseArgs(argv: readonly string[]): BenchOptions {
  const quick = argv.includes('--quick');
  const o: BenchOptions = { ...(quick ? QUICK : FULL), write: !quick, quick };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const key = NUMERIC[a];
    if (key) {
      const v = argv[++i];
      if (v === undefined || !/^[1-9]\d*$/.test(v)) throw new UsageError(`${a} needs a positive integer`);
      o[key] = Number(v);
    } else if (a === '--write') o.write = true;
    else if (a === '--no-write') o.write = false;
    else if (a !== '--quick') throw new UsageError(`unknown argument ${a}`);
  }
  return o;
}
