// The pure parts of npm run bench (test/bench/): statistics, formatting, Markdown tables, the
// command line, the order of interleaved batches, the verdicts of issue 10's rows, and the
// charts rendered to SVG. The bench itself is a program, never a timed test.
import { expect } from 'chai';
import { parseArgs, FULL, QUICK, UsageError } from '../../bench/args';
import { cycleChartSpec, cyclePoints, delayChartSpec, delayPoints, renderSvg } from '../../bench/charts';
import type { ConcurrencyReport, RoundReport } from '../../bench/concurrency';
import type { HeldReport } from '../../bench/held';
import { roundOrder, runRounds } from '../../bench/interleave';
import { escapeCell, renderTable } from '../../bench/markdown';
import { benchmarksMarkdown } from '../../bench/report';
import { MEASUREMENTS, buildContextRows, buildRows, compare, delaySummary, judge, type MeasurementId, type Results } from '../../bench/rows';
import { formatDuration, formatNumber, formatRange, formatRatio, median, pairedRatios, quantile, summarize } from '../../bench/stats';

describe('bench helpers', () => {
  describe('statistics', () => {
    it('quantiles interpolate between the closest ranks, in any input order', () => {
      expect(median([3, 1, 2])).to.equal(2);
      expect(median([4, 1, 3, 2])).to.equal(2.5);
      expect(quantile([1, 2, 3, 4], 0.1)).to.be.closeTo(1.3, 1e-12);
      expect(quantile([1, 2, 3, 4], 0)).to.equal(1);
      expect(quantile([1, 2, 3, 4], 1)).to.equal(4);
      expect(quantile([7], 0.9)).to.equal(7);
    });

    it('refuses an empty sample and a quantile outside [0, 1]', () => {
      expect(() => median([])).to.throw(RangeError, /empty/);
      expect(() => quantile([1], 1.5)).to.throw(RangeError);
      expect(() => quantile([1], Number.NaN)).to.throw(RangeError);
    });

    it('summarises a sample and leaves it unsorted', () => {
      const xs = [10, 1, 5, 3, 8, 2, 9, 4, 7, 6];
      const s = summarize(xs);
      expect(s).to.deep.equal({ n: 10, median: 5.5, p10: quantile(xs, 0.1), p90: quantile(xs, 0.9), min: 1, max: 10 });
      expect(s.p10).to.be.closeTo(1.9, 1e-12);
      expect(xs[0]).to.equal(10);
    });

    it('pairs ratios by round and refuses samples of different lengths', () => {
      expect(pairedRatios([2, 9], [1, 3])).to.deep.equal([2, 3]);
      expect(() => pairedRatios([1, 2], [1])).to.throw(RangeError, /length/);
    });
  });

  describe('formatting', () => {
    it('keeps three significant digits at most', () => {
      expect(formatNumber(1.2749)).to.equal('1.27');
      expect(formatNumber(0.05)).to.equal('0.05');
      expect(formatNumber(28.34)).to.equal('28.3');
      expect(formatNumber(140.4)).to.equal('140');
      expect(formatRatio(1.4)).to.equal('1.40x');
      expect(formatRange(1.2, 1.35, 'x')).to.equal('1.20–1.35x');
    });

    it('writes durations given in microseconds in the unit that reads best', () => {
      expect(formatDuration(850)).to.equal('850 µs');
      expect(formatDuration(3450)).to.equal('3.45 ms');
      expect(formatDuration(22_500)).to.equal('22.5 ms');
      expect(formatDuration(1_234_000)).to.equal('1.23 s');
    });
  });

  describe('Markdown tables', () => {
    it('pads columns, aligns right where asked and escapes what Markdown would read', () => {
      const t = renderTable(['name', 'value'], [['a|b', '1'], ['long name', '22']], ['left', 'right']);
      expect(t.split('\n')).to.deep.equal([
        '| name      | value |',
        '| --------- | ----: |',
        '| a\\|b      |     1 |',
        '| long name |    22 |',
      ]);
      expect(escapeCell('two\nlines \\ here')).to.equal('two lines \\\\ here');
    });

    it('refuses a row with the wrong number of cells', () => {
      expect(() => renderTable(['a', 'b'], [['1']])).to.throw(RangeError, /row 0 has 1 cells/);
    });
  });

  describe('command line', () => {
    it('has full defaults, quick defaults that other flags override, and writes only full runs by default', () => {
      expect(parseArgs([])).to.deep.equal({ ...FULL, write: true, quick: false });
      expect(parseArgs(['--quick'])).to.deep.equal({ ...QUICK, write: false, quick: true });
      expect(parseArgs(['--quick', '--batches', '3', '--write'])).to.include({ batches: 3, write: true, quick: true, cycles: QUICK.cycles });
      expect(parseArgs(['--held-roots', '10', '--no-write'])).to.include({ heldRoots: 10, write: false });
    });

    it('refuses unknown flags and counts that are not positive integers', () => {
      expect(() => parseArgs(['--batch', '3'])).to.throw(UsageError, /unknown argument --batch/);
      expect(() => parseArgs(['--cycles'])).to.throw(UsageError, /positive integer/);
      expect(() => parseArgs(['--cycles', '0'])).to.throw(UsageError);
      expect(() => parseArgs(['--cycles', '2.5'])).to.throw(UsageError);
    });
  });

  describe('interleaved rounds', () => {
    it('alternates the order every round and keeps no figure of the warm-up', async () => {
      expect(roundOrder(['a', 'b', 'c'], 0)).to.deep.equal(['a', 'b', 'c']);
      expect(roundOrder(['a', 'b', 'c'], 1)).to.deep.equal(['c', 'b', 'a']);
      const calls: string[] = [];
      let t = 0;
      const m = (id: string) => ({ id, batch: async () => (calls.push(id), ++t) });
      const { samples, retried } = await runRounds([m('v'), m('b')], { rounds: 3, warmup: 1 });
      expect(calls).to.deep.equal(['v', 'b', 'v', 'b', 'b', 'v', 'v', 'b']);
      expect(samples).to.deep.equal({ v: [3, 6, 7], b: [4, 5, 8] });
      expect(retried).to.deep.equal([]);
    });

    it('runs a failed batch again and reports it, and fails when it keeps failing', async () => {
      let n = 0;
      const flaky = { id: 'f', batch: async () => (++n === 2 ? Promise.reject(new Error('lost a race')) : n) };
      const { samples, retried } = await runRounds([flaky], { rounds: 2, warmup: 1 });
      expect(samples).to.deep.equal({ f: [3, 4] });
      expect(retried).to.deep.equal([{ id: 'f', round: 0, error: 'lost a race' }]);
      let err: unknown;
      await runRounds([{ id: 'x', batch: async () => Promise.reject(new Error('broken')) }], { rounds: 1, retries: 1 }).catch((e: unknown) => (err = e));
      expect(err).to.be.an('error').with.property('message', 'broken');
    });

    it('refuses two measurements with one id', async () => {
      const m = { id: 'x', batch: async () => 1 };
      let err: unknown;
      await runRounds([m, m], { rounds: 1 }).catch((e: unknown) => (err = e));
      expect(err).to.be.an('error').with.property('message').that.matches(/unique/);
    });
  });

  describe("issue 10's rows", () => {
    const round = (p99: number, max: number, failures: Record<string, number> = {}): RoundReport => ({
      roots: 64, failures, examples: {}, wallMs: 400, rootMs: { p50: 300, max: 390 }, delayMs: { p50: 0.1, p99, max },
    });
    const held = (over: Partial<HeldReport> = {}): HeldReport => ({
      asked: 500, held: 500, failures: {}, examples: {}, firstFailure: null, loopDevicesBound: 1, loopDevicesNamed: 1,
      rssBefore: 60e6, rssHeld: 70e6, makeSeconds: 3, closeSeconds: 1, ...over,
    });
    /** Every measurement at 1000 µs, then the given ones (one figure per round). */
    const results = (over: Partial<Record<MeasurementId, number[]>>, concurrency: ConcurrencyReport[], h: HeldReport): Results => {
      const samples: Record<string, number[]> = {};
      for (const id of Object.keys(MEASUREMENTS)) samples[id] = over[id as MeasurementId] ?? [1000, 1000, 1000];
      return { samples, retried: [], cycles: Object.fromEntries(Object.keys(MEASUREMENTS).map((id) => [id, 10])), concurrency, held: h };
    };

    it('judges every condition of a target', () => {
      expect(judge([{ value: 1.4, op: '<=', limit: 1.4 }])).to.equal('met');
      expect(judge([{ value: 1.41, op: '<=', limit: 1.4 }])).to.equal('missed');
      expect(judge([{ value: 0, op: '==', limit: 0 }, { value: 3, op: '<', limit: 3 }])).to.equal('missed');
      expect(judge([{ value: 20, op: '>=', limit: 20 }])).to.equal('met');
    });

    it('compares a variant with its baseline round by round', () => {
      const c = compare({ main: [2, 3, 4], floor: [1, 1, 2] } as Record<string, number[]>, 'main', 'floor');
      expect(c.ratio).to.equal(2);
      expect(c.variant.median).to.equal(3);
      expect(c.baseline.median).to.equal(1);
    });

    it('meets targets where the figures do, misses them where they do not', () => {
      const r = results(
        { main: [1300, 1300, 1300], floor: [1000, 1000, 1000], floor4k: [500, 500, 500], tmpfs: [3000, 3000, 3000], utilLinuxNode: [26_000, 26_000, 26_000], fuse: [850, 850, 850] },
        [{ cold: round(2, 9), warm: round(1, 4) }, { cold: round(3, 12), warm: round(1, 4) }],
        held(),
      );
      const rows = buildRows(r, 64);
      expect(rows.map((x) => x.n)).to.deep.equal([1, 2, 3, 4, 5, 6, 7]);
      expect(rows.map((x) => x.verdict)).to.deep.equal(['met', 'missed', 'met', 'met', 'met', 'missed', 'met']);
      expect(rows[0]!.now).to.match(/^1\.30x C floor/);
      expect(rows[3]!.now).to.match(/^20\.0x faster/);
      // Rows 4 and 5 are judged against the tools spawned from Node; the shell loop and the C
      // floor's own standing against util-linux are context, and so is the C floor with the
      // library's loop block size (row 1 stays judged against the floor as given).
      const context = buildContextRows(r);
      expect(context.map((c) => c.measure)).to.have.length(7);
      expect(context[0]!.measure).to.match(/^Node floor vs C floor/);
      expect(context[1]!.measure).to.match(/^C floor with 4 KiB loop blocks vs the C floor/);
      expect(context[1]!.now).to.match(/^0\.50x/);
      expect(context[2]!.measure).to.match(/^main job vs the C floor with 4 KiB loop blocks/);
      expect(context[2]!.now).to.match(/^2\.60x/);
      expect(context[5]!.measure).to.match(/^C floor vs util-linux spawned from Node/);
      expect(context[5]!.now).to.match(/^26\.0x faster/);
      // The Node floor (the same awaits, no library) against util-linux bounds row 4.
      expect(context[6]!.measure).to.match(/^Node floor vs util-linux spawned from Node/);
      // p99 is the median of the runs' (2.5 ms), max the worst of all (12 ms: missed).
      expect(delaySummary(r.concurrency, 'cold')).to.include({ p99: 2.5, max: 12 });
    });

    it('counts a failure of any round and unshared loop devices as missed', () => {
      const failing = buildRows(results({}, [{ cold: round(1, 2), warm: round(1, 2, { ERR_X: 1 }) }], held()), 64);
      expect(failing[5]!.verdict).to.equal('missed');
      expect(failing[5]!.now).to.include('1 failures (ERR_X ×1)');
      const unshared = held({ held: 255, loopDevicesBound: 255, loopDevicesNamed: 255, firstFailure: 255, failures: { ERR_LOOP_NO_FREE_DEVICE: 245 } });
      const row = buildRows(results({}, [{ cold: round(1, 2), warm: round(1, 2) }], unshared), 64)[6]!;
      expect(row.verdict).to.equal('missed');
      expect(row.now).to.include('fails past 255 loop devices (one per root)').and.include('not shared');
      expect(buildRows(results({}, [{ cold: round(1, 2), warm: round(1, 2) }], held({ rssHeld: 80e6 + 1 })), 64)[6]!.verdict).to.equal('missed');
    });

    it('writes BENCHMARKS.md with the table, the command and the charts', () => {
      const r = results({}, [{ cold: round(1, 2), warm: round(1, 2) }], held());
      const machine = { date: '2026-11-29T00:00:00.000Z', cpu: '2 × CPU', cpus: 2, kernel: 'Linux 6.18', node: 'v20.20.2', commit: 'abc', load: [0.1, 0.2] as [number, number], kernelApis: 'LOOP_CONFIGURE yes' };
      const workload = { image: '/x.sif', origin: 'generated' as const, offset: 4096, size: 8192, fstype: 'squashfs' as const, inside: 'etc/hello.txt' };
      const md = benchmarksMarkdown({ machine, workload, command: 'npm run bench', batches: 3, seconds: 9 }, buildRows(r, 64), [], r, { cycles: 'docs/a.svg', delay: 'docs/b.svg' });
      expect(md).to.include('Generated by `npm run bench`').and.include('![Time per cycle, imgmount and its baselines](docs/a.svg)').and.include('| 2026-11-29T00:00:00.000Z |');
      expect(md).to.match(/\| 1 +\| main job: init → root\(\)/);
      expect(md).not.to.include('Warning');
      const md2 = (load: [number, number]) => benchmarksMarkdown({ machine: { ...machine, load }, workload, command: 'npm run bench', batches: 3, seconds: 9 }, buildRows(r, 64), [], r, { cycles: 'a', delay: 'b' });
      // The bench's own process adds about 1 to the load at the end.
      expect(md2([1.1, 2.4])).not.to.include('Warning');
      expect(md2([1.6, 1.0])).to.include('**Warning:** the machine was busy (load average 1.60 at the start, 1.00 at the end, on 2 CPUs)');
      expect(md2([0.2, 2.6])).to.include('**Warning:**');
    });
  });

  describe('charts', () => {
    it('render to SVG from the figures with vega-lite, headless', async function () {
      this.timeout(20_000);
      const samples: Record<string, number[]> = {};
      for (const id of Object.keys(MEASUREMENTS)) samples[id] = [1000, 1500, 2000];
      const cycles = await renderSvg(cycleChartSpec(cyclePoints(samples)));
      expect(cycles).to.match(/^<svg /).and.include('imgmount, kernel').and.include('C floor').and.include('1.50 ms');
      const runs: ConcurrencyReport[] = [1, 2].map((k) => ({
        cold: { roots: 64, failures: {}, examples: {}, wallMs: 1, rootMs: { p50: 1, max: 1 }, delayMs: { p50: k, p99: 10 * k, max: 20 * k } },
        warm: { roots: 64, failures: {}, examples: {}, wallMs: 1, rootMs: { p50: 1, max: 1 }, delayMs: { p50: k, p99: 2 * k, max: 4 * k } },
      }));
      expect(delayPoints(runs).find((p) => p.phase === 'cold' && p.stat === 'p99')).to.deep.equal({ phase: 'cold', stat: 'p99', median: 15, min: 10, max: 20 });
      const delay = await renderSvg(delayChartSpec(delayPoints(runs), { p99: 3, max: 10 }, 2));
      expect(delay).to.match(/^<svg /).and.include('p99 target 3 ms');
    });
  });
});
