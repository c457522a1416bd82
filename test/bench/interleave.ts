// Interleaved batches: every round runs one batch of each measurement, in an order that
// alternates (forwards on even rounds, backwards on odd ones), so that a variant and the
// baseline next to it see the same machine, and drift (another process, the page cache, CPU
// frequency) falls on both. A warm-up round runs first and is not kept.

export interface Measurement {
  id: string;
  /** Runs one batch and returns the mean time per cycle in microseconds. */
  batch: () => Promise<number>;
}

export interface RoundsOptions {
  rounds: number;
  /** Rounds run first and thrown away (default 1). */
  warmup?: number;
  /** Called after each kept round (progress). */
  onRound?: (round: number) => void;
}

/** Batch means per measurement id, index = round. */
export type Samples = Record<string, number[]>;

/** The order of round `r`: the list as given on even rounds, reversed on odd ones. */
export function roundOrder<T>(list: readonly T[], r: number): T[] {
  return r % 2 === 0 ? [...list] : [...list].reverse();
}

export async function runRounds(measurements: readonly Measurement[], o: RoundsOptions): Promise<Samples> {
  const ids = new Set(measurements.map((m) => m.id));
  if (ids.size !== measurements.length) throw new Error('measurement ids must be unique');
  for (let w = 0; w < (o.warmup ?? 1); w++) for (const m of roundOrder(measurements, w)) await m.batch();
  const samples: Samples = Object.fromEntries(measurements.map((m) => [m.id, [] as number[]]));
  for (let r = 0; r < o.rounds; r++) {
    for (const m of roundOrder(measurements, r)) samples[m.id]!.push(await m.batch());
    o.onRound?.(r);
  }
  return samples;
}
