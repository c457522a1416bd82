// Figures for npm run bench: medians and spreads of batch means, ratios between a variant and
// its baseline, and how they are written. Pure functions (test/unit/harness/bench-helpers.test.ts).

/** A sample of batch means (or any figures) summarised: median, p10–p90 spread, extremes. */
export interface Summary {
  n: number;
  median: number;
  p10: number;
  p90: number;
  min: number;
  max: number;
}

/**
 * The q-quantile (0 ≤ q ≤ 1) by linear interpolation between the closest ranks (R's type 7,
 * numpy's default): the median of [1, 2, 3, 4] is 2.5, its 0.1-quantile 1.3.
 */
export function quantile(xs: readonly number[], q: number): number {
  if (xs.length === 0) throw new RangeError('quantile of an empty sample');
  if (!(q >= 0 && q <= 1)) throw new RangeError(`quantile ${q} is not within [0, 1]`);
  const s = [...xs].sort((a, b) => a - b);
  const h = (s.length - 1) * q;
  const lo = Math.floor(h);
  const hi = Math.ceil(h);
  return s[lo]! + (h - lo) * (s[hi]! - s[lo]!);
}

export function median(xs: readonly number[]): number {
  return quantile(xs, 0.5);
}

export function summarize(xs: readonly number[]): Summary {
  return {
    n: xs.length,
    median: median(xs),
    p10: quantile(xs, 0.1),
    p90: quantile(xs, 0.9),
    min: Math.min(...xs),
    max: Math.max(...xs),
  };
}

/** Per-round ratios variant/baseline of batches run side by side (same index = same round). */
export function pairedRatios(variant: readonly number[], baseline: readonly number[]): number[] {
  if (variant.length !== baseline.length) throw new RangeError(`paired samples differ in length (${variant.length} and ${baseline.length})`);
  return variant.map((v, i) => v / baseline[i]!);
}

/** Two significant decimals below 10, one up to 100, none above: 1.27x, 28.3x, 140x. */
export function formatRatio(x: number): string {
  return `${formatNumber(x)}x`;
}

/** A spread as "lo–hi" with the unit once: 1.20–1.35x, 0.81–0.92 ms. */
export function formatRange(lo: number, hi: number, unit: string): string {
  return `${formatNumber(lo)}–${formatNumber(hi)}${unit}`;
}

/** A duration given in microseconds: "850 µs" below 1 ms, "3.45 ms" up to 100 ms, "1.2 s" beyond. */
export function formatDuration(us: number): string {
  if (!Number.isFinite(us)) return String(us);
  if (us < 1000) return `${formatNumber(us)} µs`;
  if (us < 100_000) return `${formatNumber(us / 1000)} ms`;
  return `${formatNumber(us / 1e6)} s`;
}

/** Three significant digits, at most two decimals: 0.05, 1.27, 28.3, 140, 1234. */
export function formatNumber(x: number): string {
  if (!Number.isFinite(x)) return String(x);
  const a = Math.abs(x);
  if (a >= 100) return x.toFixed(0);
  if (a >= 10) return x.toFixed(1);
  return x.toFixed(2);
}
