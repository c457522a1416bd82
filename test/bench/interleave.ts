// Interleaved batches: every round runs one batch of each measurement, in an order that
// alternates (forwards on even rounds, backwards on odd ones), so that a variant and the
// baseline next to it see the same machine, and drift (another process, the page cache, CPU
// frequency) falls on both. A warm-up round runs first and is not kept.
//
// A batch that fails is run again, up to `retries` times, and every such failure is kept and
// reported: on a shared machine another process's loop devices can race a tool's (util-linux
// gives up on a lost race where the library retries), and one lost race should not cost the
// run; a batch that keeps failing is an error.

export interface Measurement {
  id: string;
  /** Runs one batch and returns the mean time per cycle in microseconds. */
  batch: () => Promise<number>;
}

export interface RoundsOptions {
  rounds: number;
  /** Rounds run first and thrown away (default 1). */
  warmup?: number;
  /** How many times a failed batch is run again (default 2). */
  retries?: number;
  /** Called after each kept round (progress). */
  onRound?: (round: number) => void;
}

/** A batch that failed and was run again. */
export interface Retried {
  id: string;
  /** Round (-1 for the warm-up). */
  round: number;
  error: string;
}

/** Batch means per measurement id, index = round. */
export type Samples = Record<string, number[]>;

/** The order of round `r`: the list as given on even rounds, reversed on odd ones. */
export function roundOrder<T>(list: readonly T[], r: number): T[] {
  return r % 2 === 0 ? [...list] : [...list].reverse();
}

export async function runRounds(measurements: readonly Measurement[], o: RoundsOptions): Promise<{ samples: Samples; retried: Retried[] }> {
  const ids = new Set(measurements.map((m) => m.id));
  if (ids.size !== measurements.length) throw new Error('measurement ids must be unique');
  const retried: Retried[] = [];
  const run = async (m: Measurement, round: number): Promise<number> => {
    for (let attempt = 0; ; attempt++) {
      try {
        return await m.batch();
      } catch (err) {
        if (attempt >= (o.retries ?? 2)) throw err;
        retried.push({ id: m.id, round, error: (err as Error).message ?? String(err) });
      }
    }
  };
  for (let w = 0; w < (o.warmup ?? 1); w++) for (const m of roundOrder(measurements, w)) await run(m, -1);
  const samples: Samples = Object.fromEntries(measurements.map((m) => [m.id, [] as number[]]));
  for (let r = 0; r < o.rounds; r++) {
    for (const m of roundOrder(measurements, r)) samples[m.id]!.push(await run(m, r));
    o.onRound?.(r);
  }
  return { samples, retried };
}
