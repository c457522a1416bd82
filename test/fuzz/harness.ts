// The fuzz harness: fast-check over one target (test/fuzz/targets.ts) for N inputs, counting
// outcomes by error code, sampling RSS, and turning the first violation into a report with the
// counterexample and how to replay it. `npm run fuzz` (test/fuzz/run.ts) runs it at scale under
// a supervisor that catches crashes and synchronous hangs; test/unit/harness/fuzz-harness.test.ts runs
// a few hundred inputs of each target in CI.
//
// Hangs inside a run (a promise that never settles) are caught here by a watchdog of `hangMs`;
// a run that blocks the event loop can only be seen from outside, by the supervisor, through
// the heartbeat `onRun` writes.
import fc from 'fast-check';
import { errorSummary, toJson } from './mutate';
import { Violation, targets, type Corpus, type Target, type TargetContext, type TargetName } from './targets';

export interface FuzzOptions {
  /** A target by name, or one of the harness's own (its self-tests). */
  target: TargetName | Target<any>; // eslint-disable-line @typescript-eslint/no-explicit-any
  runs: number;
  seed: number;
  /** fast-check replay path of one failing run (from a report). */
  path?: string;
  /** A run that has not settled after this long is a hang (default 10 s; runs take milliseconds). */
  hangMs?: number;
  /** Called (and awaited) before each run with its index and the input as JSON (the supervisor's heartbeat). */
  onRun?: (index: number, input: () => string) => void | Promise<void>;
  /** Sample RSS every this many runs (default 1000; 0: never). */
  sampleEvery?: number;
}

export interface Failure {
  kind: string;
  message: string;
  /** The (shrunk) failing input, as JSON. */
  counterexample: string;
  seed: number;
  path: string;
  replay: string;
}

export interface RssSample {
  run: number;
  rss: number;
}

export interface FuzzReport {
  target: string;
  runs: number;
  seed: number;
  seconds: number;
  runsPerSecond: number;
  /** Outcome ('ok', an ERR_* code, per check for `headers`) -> count, over the runs before any failure. */
  outcomes: Record<string, number>;
  rss: RssSample[];
  failure?: Failure;
}

/** The command that replays a failure. */
export function replayCommand(target: string, seed: number, path: string): string {
  return `npm run fuzz -- --target ${target} --seed ${seed} --path ${path} --runs 1`;
}

function watchdog<T>(p: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const hang = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Violation('hang', `the run had not settled after ${ms} ms`)), ms);
  });
  return Promise.race([p, hang]).finally(() => clearTimeout(timer));
}

/** Runs one target for `options.runs` inputs. Never throws for a violation: it is in the report. */
export async function runFuzz(options: FuzzOptions, corpus: Corpus, ctx: Omit<TargetContext, 'corpus'>): Promise<FuzzReport> {
  const target = (typeof options.target === 'string' ? targets[options.target] : options.target) as Target<unknown>;
  const full: TargetContext = { ...ctx, corpus };
  const hangMs = options.hangMs ?? 10_000;
  const sampleEvery = options.sampleEvery ?? 1000;
  const outcomes: Record<string, number> = {};
  const rss: RssSample[] = [];
  let index = 0;
  let failed = false;
  let hung: unknown;
  const t0 = process.hrtime.bigint();
  const property = fc.asyncProperty(target.arbitrary(corpus) as fc.Arbitrary<unknown>, async (input) => {
    // After a hang, shrinking would hang again on every smaller input: keep the original.
    if (hung !== undefined) return;
    const i = index++;
    await options.onRun?.(i, () => toJson(target.describe(input, corpus)));
    if (sampleEvery > 0 && i % sampleEvery === 0) rss.push({ run: i, rss: process.memoryUsage().rss });
    try {
      const got = await watchdog(target.run(input, full), hangMs);
      if (!failed) for (const o of got) outcomes[o] = (outcomes[o] ?? 0) + 1;
    } catch (err) {
      failed = true;
      if (err instanceof Violation && err.kind === 'hang') hung = input;
      // A target classifies what the library throws; anything else escaping it is untyped.
      throw err instanceof Violation ? err : new Violation('untyped', errorSummary(err), { cause: err });
    }
  });
  const params: fc.Parameters<[unknown]> = { numRuns: options.runs, seed: options.seed, ...(options.path ? { path: options.path } : {}) };
  const details = await fc.check(property, params);
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  const report: FuzzReport = { target: target.name, runs: index, seed: options.seed, seconds, runsPerSecond: index / seconds, outcomes, rss };
  if (details.failed) {
    const input = hung ?? details.counterexample?.[0];
    const err = details.errorInstance;
    const path = details.counterexamplePath ?? '';
    report.failure = {
      kind: err instanceof Violation ? err.kind : 'untyped',
      message: err instanceof Error ? err.message : String(err),
      counterexample: toJson(target.describe(input, corpus)),
      seed: details.seed,
      path,
      replay: replayCommand(target.name, details.seed, path),
    };
  }
  return report;
}
