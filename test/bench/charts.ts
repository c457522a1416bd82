// The charts of BENCHMARKS.md, drawn by Vega-Lite from the run's own figures, rendered
// headless to SVG (no canvas, no browser: a Vega View with the 'none' renderer).
// vega and vega-lite 6 are ESM only; tsc (module commonjs) turns import() into require(),
// which cannot load them on Node 20, so they are loaded by a real dynamic import.
import { pathToFileURL } from 'node:url';
import type { ConcurrencyReport } from './concurrency';
import type { MeasurementId } from './rows';
import { formatDuration, median, summarize } from './stats';
import type { Samples } from './interleave';

/** One point of the cycle-time chart: a variant or its baseline, in milliseconds per cycle. */
export interface CyclePoint {
  comparison: string;
  label: string;
  role: 'imgmount' | 'baseline';
  median: number;
  p10: number;
  p90: number;
}

/** One bar of the event-loop chart: a statistic of one phase, over the runs (median, and the range). */
export interface DelayPoint {
  phase: 'cold' | 'warm';
  stat: 'p50' | 'p99' | 'max';
  median: number;
  min: number;
  max: number;
}

/** The comparisons of the cycle chart: the variant first, then its baselines. */
export const CYCLE_CHART: ReadonlyArray<[string, MeasurementId[]]> = [
  ['1. main job vs the C floor (and the Node floor, the C floor with 4 KiB loop blocks)', ['main', 'floor', 'nodeFloor', 'floor4k']],
  ['2. with writableTmpfs vs the C floor', ['tmpfs', 'floor']],
  ['3. init() + close() vs a plain read', ['initClose', 'plainRead']],
  ['4. main job vs util-linux', ['main', 'utilLinux', 'utilLinuxNode']],
  ['5. FUSE root vs bare squashfuse_ll', ['fuse', 'squashfuse', 'squashfuseNode']],
];

/** Labels short enough for the chart's axis. */
const CHART_LABELS: Record<MeasurementId, string> = {
  floor: 'C floor',
  nodeFloor: 'Node floor (raw native calls)',
  floor4k: 'C floor, 4 KiB loop blocks',
  main: 'imgmount, kernel',
  tmpfs: 'imgmount, writableTmpfs',
  utilLinux: 'util-linux (shell loop)',
  utilLinuxNode: 'util-linux (from Node)',
  plainRead: 'open + read 64 KiB + close',
  initClose: 'imgmount init + close',
  squashfuse: 'squashfuse_ll (shell loop)',
  squashfuseNode: 'squashfuse_ll (from Node)',
  fuse: 'imgmount, FUSE',
};

export function cyclePoints(samples: Samples): CyclePoint[] {
  return CYCLE_CHART.flatMap(([comparison, ids]) =>
    ids.map((id, i) => {
      const s = summarize(samples[id]!);
      return { comparison, label: CHART_LABELS[id], role: i === 0 ? 'imgmount' : 'baseline', median: s.median / 1000, p10: s.p10 / 1000, p90: s.p90 / 1000 } as CyclePoint;
    }),
  );
}

export function delayPoints(runs: readonly ConcurrencyReport[]): DelayPoint[] {
  return (['cold', 'warm'] as const).flatMap((phase) =>
    (['p50', 'p99', 'max'] as const).map((stat) => {
      const xs = runs.map((r) => r[phase].delayMs[stat]);
      return { phase, stat, median: median(xs), min: Math.min(...xs), max: Math.max(...xs) };
    }),
  );
}

interface VegaModule {
  parse(spec: unknown): unknown;
  logger(level: number): unknown;
  Error: number;
  View: new (runtime: unknown, options: { renderer: 'none' }) => { toSVG(): Promise<string>; finalize(): void };
}
interface VegaLiteModule {
  compile(spec: unknown, options: { logger: unknown }): { spec: unknown };
}

const importEsm = new Function('specifier', 'return import(specifier)') as (specifier: string) => Promise<unknown>;
const load = async <T>(name: string): Promise<T> => (await importEsm(pathToFileURL(require.resolve(name)).href)) as T;

const FONT = { font: 'Helvetica, Arial, sans-serif' };

export function cycleChartSpec(points: readonly CyclePoint[]): unknown {
  const comparisons = [...new Set(points.map((p) => p.comparison))];
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title: { text: 'Time per cycle: imgmount and the baseline it is compared with', subtitle: 'dot: median of batch means; line: p10–p90 of batch means; log scale', anchor: 'start', ...FONT },
    data: { values: points.map((p) => ({ ...p, text: formatDuration(p.median * 1000) })) },
    facet: { row: { field: 'comparison', type: 'nominal', sort: comparisons, title: null, header: { labelAngle: 0, labelAlign: 'left', labelFontWeight: 'bold', labelPadding: 4, labelOrient: 'top' } } },
    spacing: 8,
    resolve: { scale: { y: 'independent' } },
    spec: {
      width: 460,
      height: { step: 18 },
      encoding: {
        y: { field: 'label', type: 'nominal', title: null, sort: null, axis: { labelLimit: 260 } },
        color: { field: 'role', type: 'nominal', title: null, scale: { domain: ['imgmount', 'baseline'], range: ['#d62728', '#1f77b4'] } },
      },
      layer: [
        { mark: { type: 'rule', strokeWidth: 2 }, encoding: { x: { field: 'p10', type: 'quantitative', scale: { type: 'log' }, title: 'ms per cycle' }, x2: { field: 'p90' } } },
        { mark: { type: 'point', filled: true, size: 50 }, encoding: { x: { field: 'median', type: 'quantitative' } } },
        { mark: { type: 'text', align: 'left', dx: 6, fontSize: 10 }, encoding: { x: { field: 'p90', type: 'quantitative' }, text: { field: 'text' }, color: { value: '#333' } } },
      ],
    },
    config: { ...FONT, axis: { labelFont: FONT.font, titleFont: FONT.font }, header: { labelFont: FONT.font } },
  };
}

export function delayChartSpec(points: readonly DelayPoint[], targets: { p99: number; max: number }, runs: number): unknown {
  // Rules and labels sit in the middle of their bar's band (bandPosition 0.5), bars fill it.
  const x = (bandPosition?: number) => ({
    x: { field: 'stat', type: 'nominal', sort: ['p50', 'p99', 'max'], title: null, axis: { labelAngle: 0 }, ...(bandPosition === undefined ? {} : { bandPosition }) },
    xOffset: { field: 'phase', sort: ['cold', 'warm'], ...(bandPosition === undefined ? {} : { bandPosition }) },
  });
  const bars = {
    data: { values: points },
    encoding: { color: { field: 'phase', type: 'nominal', sort: ['cold', 'warm'], title: null, scale: { range: ['#ff7f0e', '#2ca02c'] } } },
    layer: [
      { mark: 'bar', encoding: { ...x(), y: { field: 'median', type: 'quantitative', title: 'event-loop delay, ms' } } },
      { mark: { type: 'rule', color: '#333' }, encoding: { ...x(0.5), y: { field: 'min', type: 'quantitative' }, y2: { field: 'max' } } },
      { mark: { type: 'text', dy: -6, fontSize: 10 }, encoding: { ...x(0.5), y: { field: 'max', type: 'quantitative' }, text: { field: 'median', format: '.1f' }, color: { value: '#333' } } },
    ],
  };
  const lines = {
    data: { values: [{ y: targets.p99, text: `p99 target ${targets.p99} ms` }, { y: targets.max, text: `max target ${targets.max} ms` }] },
    layer: [
      { mark: { type: 'rule', strokeDash: [4, 3], color: '#777' }, encoding: { y: { field: 'y', type: 'quantitative' } } },
      { mark: { type: 'text', align: 'left', dx: 4, dy: -5, x: 0, fontSize: 10, color: '#555' }, encoding: { y: { field: 'y', type: 'quantitative' }, text: { field: 'text' } } },
    ],
  };
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title: {
      text: 'Event-loop delay while 64 roots are made at once (half with writableTmpfs)',
      subtitle: `cold: first use in a fresh process; warm: the second round; bar: median over ${runs} run(s); line: range`,
      anchor: 'start',
      ...FONT,
    },
    width: 420,
    height: 260,
    layer: [bars, lines],
    config: { ...FONT, axis: { labelFont: FONT.font, titleFont: FONT.font } },
  };
}

/** Renders a Vega-Lite spec to SVG text. */
export async function renderSvg(spec: unknown): Promise<string> {
  const [vega, vl] = await Promise.all([load<VegaModule>('vega'), load<VegaLiteModule>('vega-lite')]);
  // Warnings (e.g. about the facets' independent scales, which are meant) are not printed.
  const view = new vega.View(vega.parse(vl.compile(spec, { logger: vega.logger(vega.Error) }).spec), { renderer: 'none' });
  try {
    return await view.toSVG();
  } finally {
    view.finalize();
  }
}
