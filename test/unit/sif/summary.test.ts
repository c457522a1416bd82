// loadSifSummary (what every init() loads) against loadSif: the same checks, so the same
// rejection (code and message) or the same warnings, and each summary the matching fields of
// the full view; over the 23 real images and over random corruptions of them.
import { expect } from 'chai';
import fc from 'fast-check';
import { bufferSource } from '../../../lib/io/byte-source';
import { loadSif } from '../../../lib/sif';
import { loadSifSummary } from '../../../lib/sif/read';
import { fixtureImages, readFixture } from './helpers';

type Outcome = { ok: true; warnings: string[]; descriptors: unknown[] } | { ok: false; code: unknown; message: string };

const FIELDS = ['slot', 'id', 'dataType', 'groupId', 'offset', 'size', 'name', 'partition'] as const;

async function full(b: Buffer): Promise<Outcome> {
  try {
    const img = await loadSif(bufferSource(b));
    const descriptors = img.descriptors.map((d) => Object.fromEntries(FIELDS.filter((f) => d[f] !== undefined).map((f) => [f, d[f]])));
    return { ok: true, warnings: img.warnings, descriptors };
  } catch (err) {
    return { ok: false, code: (err as { code?: unknown }).code, message: (err as Error).message };
  }
}

async function summary(b: Buffer): Promise<Outcome> {
  try {
    const s = await loadSifSummary(bufferSource(b));
    return { ok: true, warnings: s.warnings, descriptors: s.descriptors.map((d) => ({ ...d })) };
  } catch (err) {
    return { ok: false, code: (err as { code?: unknown }).code, message: (err as Error).message };
  }
}

describe('sif: the summary detection loads', () => {
  for (const rel of fixtureImages) {
    it(`${rel}: what loadSif finds`, async () => {
      const b = readFixture(rel);
      const want = await full(b);
      expect(want.ok, 'the fixture loads').to.equal(true);
      expect(await summary(b)).to.deep.equal(want);
    });
  }

  it('random corruptions of the busybox image: the same rejection or the same result', async () => {
    const orig = readFixture('apptainer/busybox_amd64.sif');
    let rejected = 0;
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.record({ pos: fc.integer({ min: 0, max: 4096 + 6 * 585 }), xor: fc.integer({ min: 1, max: 255 }) }), { minLength: 1, maxLength: 4 }),
        async (flips) => {
          const b = Buffer.from(orig);
          for (const f of flips) b[f.pos] = b[f.pos]! ^ f.xor;
          const want = await full(b);
          if (!want.ok) rejected++;
          expect(await summary(b)).to.deep.equal(want);
        },
      ),
      { numRuns: 300 },
    );
    // The corruptions reach the checks: some are rejected, some load.
    expect(rejected).to.be.within(1, 299);
  });
});
