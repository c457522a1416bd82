// Memory figures for the long-running programs (npm run fuzz, npm run soak): what is still
// referenced after full GCs, and how a quantity grows over a run.

/** A full GC when Node runs with --expose-gc (the programs fork their workers with it). */
export function gc(): void {
  (globalThis as { gc?: () => void }).gc?.();
}

/**
 * RSS and live memory (heapUsed + external) after full GCs with turns of the event loop
 * between them: the memory of freed buffers goes back asynchronously.
 */
export async function settledMemory(): Promise<{ rss: number; live: number }> {
  for (let i = 0; i < 3; i++) {
    gc();
    await new Promise((r) => setTimeout(r, 20));
  }
  const m = process.memoryUsage();
  return { rss: m.rss, live: m.heapUsed + m.external };
}

/** Least-squares slope of y over x (0 with fewer than two points or no spread in x). */
export function slope(points: ReadonlyArray<readonly [number, number]>): number {
  if (points.length < 2) return 0;
  const n = points.length;
  const mx = points.reduce((s, p) => s + p[0], 0) / n;
  const my = points.reduce((s, p) => s + p[1], 0) / n;
  let num = 0;
  let den = 0;
  for (const [x, y] of points) {
    num += (x - mx) * (y - my);
    den += (x - mx) ** 2;
  }
  return den === 0 ? 0 : num / den;
}
