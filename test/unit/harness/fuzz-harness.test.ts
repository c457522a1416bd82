// CI's share of `npm run fuzz`: a few hundred mutated real images through each target of the
// same harness (test/fuzz), and proof that the harness catches what it is there to catch: an
// untyped error, an undocumented code, a read past the bound, a run that never settles, and,
// through the supervisor, a crash and a blocked event loop.
import { expect } from 'chai';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import fc from 'fast-check';
import { ImgmountError } from '../../../lib/errors';
import { runFuzz, type FuzzReport } from '../../fuzz/harness';
import { applyMutations, layoutOf } from '../../fuzz/mutate';
import { INIT_BUDGET, Violation, classify, counting, documentedCodes, imgSource, loadCorpus, type Corpus, type Target } from '../../fuzz/targets';
import { fixture } from '../../support/fixtures';
import { testTmp } from '../../support/hooks';
import { generatedDir, repoRoot, sifFixturesDir } from '../../support/paths';

const RUNS = 300;
const SEED = 20261129;
const runner = path.join(repoRoot, 'dist', 'test', 'fuzz', 'run.js');

describe('fuzz harness (npm run fuzz, short)', function () {
  this.timeout(120_000);
  let corpus: Corpus;
  let documented: Set<string>;
  let workDir: string;

  before(async () => {
    fixture('ext3.img');
    corpus = await loadCorpus(sifFixturesDir, generatedDir);
    documented = documentedCodes(fs.readFileSync(path.join(repoRoot, 'README.md'), 'utf8'));
    workDir = fs.mkdtempSync(path.join(testTmp, 'fuzz-'));
  });

  it('reads the shared and generated fixtures and finds their structures', () => {
    const names = corpus.bases.map((b) => b.name);
    expect(names).to.include.members(['shared:one-group.sif', 'shared:apptainer/busybox_amd64.sif', 'generated:sif-kernel.sif', 'generated:ext3.img', 'generated:hdr-lf.sqfs']);
    const busybox = corpus.bases.find((b) => b.name === 'shared:apptainer/busybox_amd64.sif')!;
    expect(busybox.layout.squashfs).to.deep.equal([45056]);
    expect(corpus.bases.find((b) => b.name === 'generated:hdr-lf.sqfs')!.layout.squashfs).to.deep.equal([31]);
    expect(corpus.bases.find((b) => b.name === 'generated:ext3.img')!.layout.ext).to.deep.equal([1024]);
    expect(corpus.donors.length).to.be.greaterThan(5);
  });

  it('mutations do what they say: a coherent 2^20-slot table on a sparse file, a truncation at a boundary', async () => {
    const base = corpus.bases.find((b) => b.name === 'shared:one-group.sif')!;
    const img = applyMutations(base.bytes, base.layout, [{ m: 'sifTable', total: 2 ** 20, free: 'all', moveData: false, fit: true }], []);
    expect(img.data.readBigInt64LE(88)).to.equal(2n ** 20n);
    expect(img.data.readBigInt64LE(104)).to.equal(585n * 2n ** 20n);
    expect(img.size).to.equal(base.layout.sif!.descOff + 585 * 2 ** 20);
    expect(img.data.length).to.equal(base.bytes.length); // the rest is a sparse tail, never allocated
    const cut = applyMutations(base.bytes, base.layout, [{ m: 'truncate', boundary: true, pick: base.layout.boundaries.indexOf(128), delta: -1 }], []);
    expect(cut.size).to.equal(127);
    // The pristine layout is unchanged by applying.
    expect(await layoutOf(base.bytes)).to.deep.equal(base.layout);
  });

  const expectations: Record<string, string[]> = {
    init: ['ok', 'ERR_IMAGE_UNKNOWN_FORMAT', 'ERR_SIF_TRUNCATED', 'ERR_PARTITION_INVALID'],
    sif: ['ok', 'ERR_SIF_INVALID', 'ERR_SIF_TRUNCATED'],
    headers: ['squashfs:ok', 'ext3:ok', 'squashfs:not-this-format', 'squashfs:ERR_SQUASHFS_INVALID'],
  };
  for (const target of ['init', 'sif', 'headers'] as const) {
    it(`${target}: ${RUNS} mutated real images give valid results or typed, documented errors within the read bounds`, async () => {
      const report = await runFuzz({ target, runs: RUNS, seed: SEED }, corpus, { documented, workDir });
      expect(report.failure, JSON.stringify(report.failure, null, 2)).to.equal(undefined);
      expect(report.runs).to.equal(RUNS);
      // The mutations reach both sides: accepted images and each common refusal.
      expect(Object.keys(report.outcomes)).to.include.members(expectations[target]!);
    });
  }

  /** A target of the harness's own: `run` decides the outcome. */
  function fake(run: (n: number) => Promise<string[]>): Target<number> {
    return { name: 'fake', arbitrary: () => fc.nat(1000), describe: (n) => ({ n }), run: (n) => run(n) };
  }
  async function failureOf(target: Target<number>, hangMs?: number): Promise<NonNullable<FuzzReport['failure']>> {
    const report = await runFuzz({ target, runs: 50, seed: 1, ...(hangMs ? { hangMs } : {}) }, corpus, { documented, workDir });
    expect(report.failure, 'the harness reported nothing').to.not.equal(undefined);
    expect(report.failure!.replay).to.match(/^npm run fuzz -- --target fake --seed 1 --path \S+ --runs 1$/);
    return report.failure!;
  }

  it('catches an error that is not typed, with the shrunk counterexample', async () => {
    const f = await failureOf(fake(async (n) => (n >= 10 ? Promise.reject(new Error('boom')) : ['ok'])));
    expect(f.kind).to.equal('untyped');
    expect(f.message).to.equal('untyped: Error: boom');
    expect(JSON.parse(f.counterexample)).to.deep.equal({ n: 10 });
  });

  it('catches a code the README does not document, and one the target may not give', async () => {
    // A code of the right shape that the README's table does not list (the library never throws it).
    const missing = 'ERR_NOT_IN_THE_README';
    expect(documented.has(missing)).to.equal(false);
    const outOfTable = new ImgmountError(missing as never, 'a code nobody documented');
    const undocumented = await failureOf(fake(async () => [classify(outOfTable, new Set([missing]), documented)]));
    expect(undocumented.kind).to.equal('undocumented-code');
    // A documented code that this target has no business giving (the SIF reader finding no root filesystem).
    const err = new ImgmountError('ERR_NO_ROOTFS', 'no root filesystem found in the image');
    expect(() => classify(err, new Set(['ERR_SIF_INVALID']), documented)).to.throw(Violation, /^unexpected-code: this target may not give ERR_NO_ROOTFS/);
    expect(classify(err, new Set(['ERR_NO_ROOTFS']), documented)).to.equal('ERR_NO_ROOTFS');
    // Node's argument errors are typed; a plain TypeError is not.
    const arg = Object.assign(new TypeError('The "path" argument must be of type string'), { code: 'ERR_INVALID_ARG_TYPE' });
    expect(classify(arg, new Set(), documented)).to.equal('ERR_INVALID_ARG_TYPE');
    expect(() => classify(new TypeError('x is undefined'), new Set(), documented)).to.throw(Violation, /^untyped: TypeError: x is undefined$/);
  });

  it('catches more reads or bytes than the bound, even when the caller swallows the refusal', async () => {
    const f = await failureOf(
      fake(async (n) => {
        const c = counting(imgSource({ data: Buffer.alloc(16), size: 2 ** 40 }), INIT_BUDGET);
        await c.source.read(0, n * 4096).catch(() => undefined); // swallowed
        if (c.broken) throw new Violation('bound', c.broken);
        return ['ok'];
      }),
    );
    expect(f.kind).to.equal('bound');
    expect(f.message).to.equal('bound: 2703360 bytes asked in all, over the bound of 2700416');
  });

  it('catches a run that never settles', async () => {
    const f = await failureOf(fake((n) => (n > 5 ? new Promise<string[]>(() => undefined) : Promise.resolve(['ok']))), 200);
    expect(f.kind).to.equal('hang');
    expect(f.message).to.equal('hang: the run had not settled after 200 ms');
  });

  for (const [mode, what] of [
    ['crash', /^fuzz: CRASH: the fuzzing process ended \(signal SIGSEGV\) without a report during run 10 of sif\n    input: \{"base":/],
    ['block', /^fuzz: HANG in sif: run 10 made no progress for 300 ms\n    input: \{"base":/],
  ] as const) {
    it(`the supervisor reports a ${mode === 'crash' ? 'crash' : 'blocked event loop'} with the input and the replay command`, () => {
      const r = spawnSync(process.execPath, [runner, '--target', 'sif', '--runs', '100', '--seed', '5', '--hang-ms', '300'], {
        env: { ...process.env, IMGMOUNT_FUZZ_SELFTEST: mode },
        encoding: 'utf8',
      });
      expect(r.status, r.stderr).to.equal(1);
      expect(r.stdout).to.match(what);
      expect(r.stdout).to.include('replay: npm run fuzz -- --target sif --seed 5 --path 10 --runs 1');
    });
  }

  it('npm run fuzz: a clean short run exits 0 with outcomes, throughput and memory', () => {
    const r = spawnSync(process.execPath, [runner, '--runs', '300', '--seed', String(SEED), '--json'], { encoding: 'utf8' });
    expect(r.status, r.stdout + r.stderr).to.equal(0);
    const out = JSON.parse(r.stdout) as { ok: boolean; reports: FuzzReport[]; peakRss: number };
    expect(out.ok).to.equal(true);
    expect(out.reports.map((x) => [x.target, x.runs])).to.deep.equal([
      ['init', 100],
      ['sif', 100],
      ['headers', 100],
    ]);
    expect(out.peakRss).to.be.greaterThan(0);
  });
});
