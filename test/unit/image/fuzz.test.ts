// Property: whatever is done to an image's header bytes (flips, random integers written
// into size and offset fields, truncation), init() resolves or rejects with a typed error
// (ImgmountError with an ERR_* code, or SystemError), leaks no fd, and finishes (the
// mocha timeout catches a hang). A descriptor count of 2^62 must not allocate.
import { expect } from 'chai';
import fc from 'fast-check';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ImgmountError, SystemError, init } from '../../../lib';
import { PROBE_SIZE } from '../../../lib/image/constants';
import { detectionTestHooks } from '../../../lib/image/init';
import { HEADER_SIZE } from '../../../lib/sif';
import { openFds } from '../../support/fds';
import { fixture } from '../../support/fixtures';
import { testTmp } from '../../support/hooks';
import { sifFixturesDir } from '../../support/paths';

type Mutation =
  | { kind: 'flip'; at: number; value: number }
  | { kind: 'int64'; at: number; value: bigint }
  | { kind: 'int32'; at: number; value: number }
  | { kind: 'truncate'; at: number };

function apply(base: Buffer, muts: Mutation[]): Buffer {
  let b = Buffer.from(base);
  for (const m of muts) {
    const at = m.at % Math.max(1, b.length);
    if (m.kind === 'flip') b[at] = m.value;
    else if (m.kind === 'int64' && at + 8 <= b.length) b.writeBigInt64LE(m.value, at);
    else if (m.kind === 'int32' && at + 4 <= b.length) b.writeInt32LE(m.value, at);
    else if (m.kind === 'truncate') b = b.subarray(0, at);
  }
  return b;
}

// SIF header count/offset fields, descriptor 0..2 offset/size fields, squashfs and ext fields.
const hotSpots = [80, 88, 96, 104, 112, 120, 4096 + 17, 4096 + 25, 4096 + 585 + 17, 4096 + 585 + 25, 4096 + 1170 + 17, 4096 + 5, 20, 22, 28, 40, 1024 + 4, 1024 + 24, 1024 + 0x60];

const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ kind: fc.constant('flip' as const), at: fc.nat(6000), value: fc.integer({ min: 0, max: 255 }) }),
  fc.record({
    kind: fc.constant('int64' as const),
    at: fc.constantFrom(...hotSpots),
    value: fc.oneof(fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }), fc.constantFrom(2n ** 62n, -1n, 0n, 2n ** 53n, 585n * 2n ** 20n)),
  }),
  fc.record({ kind: fc.constant('int32' as const), at: fc.constantFrom(...hotSpots), value: fc.integer() }),
  fc.record({ kind: fc.constant('truncate' as const), at: fc.nat(50000) }),
);

function isTyped(err: unknown): boolean {
  if (err instanceof SystemError) return true;
  return err instanceof ImgmountError && /^ERR_[A-Z0-9_]+$/.test(err.code);
}

describe('init on mutated and truncated images (property)', function () {
  this.timeout(120000);
  const bases: Array<[string, string]> = [
    ['SIF', path.join(sifFixturesDir, 'one-group-signed-pgp.sif')],
    ['busybox SIF', path.join(sifFixturesDir, 'apptainer', 'busybox_amd64.sif')],
    ['squashfs', fixture('hdr-lf.sqfs')],
    ['ext3', fixture('ext3.img')],
  ];
  for (const [label, file] of bases) {
    it(`${label}: only typed errors, no leaked fd`, async () => {
      const base = fs.readFileSync(file);
      const target = path.join(testTmp, `fuzz-${label.replace(/\W/g, '')}.img`);
      const before = openFds();
      let outcomes = { ok: 0, typed: 0 };
      await fc.assert(
        fc.asyncProperty(fc.array(mutation, { minLength: 1, maxLength: 4 }), async (muts) => {
          fs.writeFileSync(target, apply(base, muts));
          try {
            const img = await init(target);
            await img.close();
            outcomes.ok++;
          } catch (err) {
            if (!isTyped(err)) throw err;
            outcomes.typed++;
          }
        }),
        { numRuns: 250, seed: 20261128 },
      );
      expect(openFds()).to.deep.equal(before);
      // Both outcomes occur: the mutations are neither all harmless nor all fatal.
      expect(outcomes.typed, 'mutated images init() rejected').to.be.above(0);
      expect(outcomes.ok, 'mutated images init() accepted').to.be.above(0);
      outcomes = { ok: 0, typed: 0 };
    });
  }

  it('a SIF claiming 2^62 descriptors fails fast with ERR_SIF_*', async () => {
    const b = Buffer.from(fs.readFileSync(path.join(sifFixturesDir, 'empty.sif')));
    b.writeBigInt64LE(2n ** 62n, 88); // total
    b.writeBigInt64LE(2n ** 62n, 80); // free
    b.writeBigInt64LE(585n * 2n ** 62n & (2n ** 63n - 1n), 104);
    const p = path.join(testTmp, 'huge-count.sif');
    fs.writeFileSync(p, b);
    const rss = process.memoryUsage().rss;
    // Every detection read counted (init's test seam): the 4 KiB head and the 128-byte header,
    // nothing of the 2^62-slot table.
    const asked: number[] = [];
    detectionTestHooks.wrapSource = (s) => ({ size: s.size, read: (offset, length) => (asked.push(length), s.read(offset, length)) });
    let err: ImgmountError | undefined;
    try {
      await init(p);
    } catch (e) {
      err = e as ImgmountError;
    } finally {
      delete detectionTestHooks.wrapSource;
    }
    expect(err?.code).to.equal('ERR_SIF_INVALID');
    // The header's fields are checked in order: descriptorsFree (offset 80) is the first beyond 2^53.
    expect(err?.message).to.equal('header field descriptorsFree at byte offset 80 is 4611686018427387904, outside [0, 2^53)');
    expect(asked).to.deep.equal([PROBE_SIZE, HEADER_SIZE]);
    expect(process.memoryUsage().rss - rss).to.be.below(64 * 1024 * 1024);
  });
});
