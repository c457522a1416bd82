// 64 roots at once (every other one with writableTmpfs), each init -> root() -> stat -> close ->
// image close, started together with Promise.all, and how long the event loop stalls meanwhile.
// Each run is a freshly forked node process: the first round there is the library's first use
// (its modules are loaded at start-up, before the sampler starts; nothing is warmed: no
// capabilities() first), the second round the same process warm.
//
// The sampler is perf_hooks.monitorEventLoopDelay({ resolution: 1 }): a 1 ms libuv timer whose
// histogram records the interval between its ticks. The figures given are that interval minus
// the 1 ms it was due after, i.e. how late the loop ran the timer.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { init, type RootOptions } from '../../lib';
import { median } from './stats';
import { runWorker, workerMain } from './worker-process';
import type { Workload } from './workload';

export const ELD_RESOLUTION_MS = 1;

export interface RoundReport {
  roots: number;
  failures: Record<string, number>;
  /** First message per failure code. */
  examples: Record<string, string>;
  /** Wall time of the round, ms. */
  wallMs: number;
  /** Per-root latency (init to image close), ms. */
  rootMs: { p50: number; max: number };
  /** Event-loop delay beyond the sampler's 1 ms period, ms. */
  delayMs: { p50: number; p99: number; max: number };
}

export interface ConcurrencyReport {
  cold: RoundReport;
  warm: RoundReport;
}

interface WorkerArgs {
  workload: Workload;
  dir: string;
  roots: number;
}

async function round(a: WorkerArgs): Promise<RoundReport> {
  const failures: Record<string, number> = {};
  const examples: Record<string, string> = {};
  const latencies: number[] = [];
  const one = async (i: number): Promise<void> => {
    const target = path.join(a.dir, `r${i}`);
    const options: RootOptions = i % 2 === 1 ? { writableTmpfs: true } : {};
    const t0 = process.hrtime.bigint();
    try {
      const image = await init(a.workload.image);
      try {
        const root = await image.root(target, options);
        try {
          await fs.promises.stat(path.join(target, a.workload.inside));
        } finally {
          await root.close();
        }
      } finally {
        await image.close();
      }
    } catch (err) {
      const code = String((err as { code?: unknown }).code ?? (err as Error).name);
      failures[code] = (failures[code] ?? 0) + 1;
      examples[code] ??= (err as Error).message;
    } finally {
      latencies.push(Number(process.hrtime.bigint() - t0) / 1e6);
    }
  };
  const h = monitorEventLoopDelay({ resolution: ELD_RESOLUTION_MS });
  h.enable();
  const t0 = process.hrtime.bigint();
  await Promise.all(Array.from({ length: a.roots }, (_, i) => one(i)));
  const wallMs = Number(process.hrtime.bigint() - t0) / 1e6;
  h.disable();
  const late = (ns: number) => Math.max(0, ns / 1e6 - ELD_RESOLUTION_MS);
  return {
    roots: a.roots,
    failures,
    examples,
    wallMs,
    rootMs: { p50: median(latencies), max: Math.max(...latencies) },
    delayMs: { p50: late(h.percentile(50)), p99: late(h.percentile(99)), max: late(h.max) },
  };
}

async function worker(a: WorkerArgs): Promise<ConcurrencyReport> {
  for (let i = 0; i < a.roots; i++) fs.mkdirSync(path.join(a.dir, `r${i}`), { recursive: true });
  const cold = await round(a);
  const warm = await round(a);
  return { cold, warm };
}

/** One run: a cold round and a warm one in a fresh node process. */
export function concurrencyRun(workload: Workload, dir: string, roots: number): Promise<ConcurrencyReport> {
  return runWorker<WorkerArgs, ConcurrencyReport>(__filename, { workload, dir, roots });
}

workerMain(module, 'concurrency', worker);

