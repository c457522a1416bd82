// Property-based checks. loadSif on mutated images either succeeds with a self-consistent
// result or rejects with an ERR_SIF_* ImgmountError, having read at most the header and one
// bounded descriptor table (a count, not a clock: tests never time, timings belong in
// `npm run bench`); and random writer operation sequences always leave an image that loads
// back to what the writer says it wrote.
import { expect } from 'chai';
import fc from 'fast-check';
import { ImgmountError } from '../../../lib/errors';
import { bufferSource, type ByteSource } from '../../../lib/io/byte-source';
import {
  DESCRIPTOR_SIZE,
  DataGeneric,
  HEADER_SIZE,
  DataOCIBlob,
  DataPartition,
  MemoryTarget,
  PartPrimSys,
  PartSystem,
  createSif,
  descriptorData,
  loadSif,
} from '../../../lib/sif';
import { D, H } from '../../../lib/sif/codec';
import { readFixture } from './helpers';

const RUNS = 300;
/**
 * The most loadSif may ask of any input: the header, then a table of at most 1024 slots (the
 * cap README.md documents; test/unit/image/bounds pins MAX_DESCRIPTORS to it).
 */
const MAX_READS = 2;
const MAX_BYTES = HEADER_SIZE + 1024 * DESCRIPTOR_SIZE;

type Mutation =
  | { kind: 'flip'; pos: number; xor: number }
  | { kind: 'truncate'; len: number }
  | { kind: 'int64'; field: 'header' | 'descriptor'; which: number; slot: number; value: bigint };

const HEADER_FIELDS = [H.descriptorsFree, H.descriptorsTotal, H.descriptorsOffset, H.descriptorsSize, H.dataOffset, H.dataSize, H.createdAt];
const DESCRIPTOR_FIELDS = [D.offset, D.size, D.sizeWithPadding, D.createdAt, D.uid];

function int64Values(size: number): fc.Arbitrary<bigint> {
  return fc.oneof(
    fc.bigInt(-(2n ** 63n), 2n ** 63n - 1n),
    fc.constantFrom(0n, 1n, -1n, 48n, 4096n, 28080n, 32176n, 2n ** 20n, 2n ** 20n + 1n, 2n ** 53n - 1n, 2n ** 53n, 2n ** 62n, 2n ** 63n - 1n, -(2n ** 63n)),
    fc.integer({ min: -64, max: 64 }).map((d) => BigInt(size + d)),
    fc.integer({ min: 0, max: size }).map(BigInt),
  );
}

function mutation(size: number): fc.Arbitrary<Mutation> {
  return fc.oneof(
    fc.record({ kind: fc.constant('flip' as const), pos: fc.integer({ min: 0, max: size - 1 }), xor: fc.integer({ min: 1, max: 255 }) }),
    // Flips concentrated where the structure lives: header and the first slots.
    fc.record({ kind: fc.constant('flip' as const), pos: fc.integer({ min: 0, max: Math.min(size, 4096 + 4 * DESCRIPTOR_SIZE) - 1 }), xor: fc.integer({ min: 1, max: 255 }) }),
    fc.record({ kind: fc.constant('truncate' as const), len: fc.integer({ min: 0, max: size }) }),
    fc.record({
      kind: fc.constant('int64' as const),
      field: fc.constantFrom('header' as const, 'descriptor' as const),
      which: fc.nat(),
      slot: fc.integer({ min: 0, max: 4 }),
      value: int64Values(size),
    }),
  );
}

function apply(orig: Buffer, muts: Mutation[]): Buffer {
  let b = Buffer.from(orig);
  for (const m of muts) {
    if (m.kind === 'flip') {
      if (m.pos < b.length) b[m.pos] = b[m.pos]! ^ m.xor;
    } else if (m.kind === 'truncate') {
      b = b.subarray(0, Math.min(m.len, b.length));
    } else {
      const fields = m.field === 'header' ? HEADER_FIELDS : DESCRIPTOR_FIELDS;
      const off = (m.field === 'header' ? 0 : 4096 + m.slot * DESCRIPTOR_SIZE) + fields[m.which % fields.length]!;
      if (off + 8 <= b.length) b.writeBigInt64LE(m.value, off);
    }
  }
  return b;
}

async function checkOne(buf: Buffer): Promise<void> {
  const inner = bufferSource(buf);
  const reads: Array<[number, number]> = [];
  const counted: ByteSource = { size: inner.size, read: (offset, length) => (reads.push([offset, length]), inner.read(offset, length)) };
  try {
    const img = await loadSif(counted);
    // Whatever loads is self-consistent and every object's bytes can be read in bounds.
    const ids = new Set<number>();
    for (const d of img.descriptors) {
      expect(d.id).to.be.greaterThan(0);
      expect(ids.has(d.id)).to.equal(false);
      ids.add(d.id);
      expect(Number.isSafeInteger(d.offset) && Number.isSafeInteger(d.size)).to.equal(true);
      expect(d.offset + d.size).to.be.at.most(buf.length);
      const data = await descriptorData(bufferSource(buf), d, { length: Math.min(d.size, 64) });
      expect(data.length).to.equal(Math.min(d.size, 64));
    }
  } catch (err) {
    if (!(err instanceof ImgmountError) || !err.code.startsWith('ERR_SIF')) {
      throw new Error(`loadSif threw something other than an ERR_SIF ImgmountError: ${String(err)}`, { cause: err });
    }
    expect(err.message.length).to.be.greaterThan(10);
  }
  // Whatever the header claims: the header first, then at most one table read, never past the cap.
  expect(reads.length, JSON.stringify(reads)).to.be.at.most(MAX_READS);
  if (reads.length > 0) expect(reads[0]).to.deep.equal([0, HEADER_SIZE]);
  expect(reads.reduce((n, [, l]) => n + l, 0), JSON.stringify(reads)).to.be.at.most(MAX_BYTES);
}

describe('sif fuzz: loadSif on mutated images', function () {
  this.timeout(120000);
  for (const name of ['one-group.sif', 'one-object-oci-blob.sif', 'two-groups-signed-pgp.sif', 'apptainer/busybox_amd64.sif']) {
    it(`${name}: ${RUNS} random mutations either load or fail with ERR_SIF_*, reading at most the header and a 1024-slot table`, async () => {
      const orig = readFixture(name);
      await fc.assert(
        fc.asyncProperty(fc.array(mutation(orig.length), { minLength: 1, maxLength: 6 }), async (muts) => {
          await checkOne(apply(orig, muts));
        }),
        { numRuns: RUNS },
      );
    });
  }

  it(`random bytes (with and without a valid magic/version) never escape as non-ImgmountErrors`, async () => {
    const head = readFixture('empty.sif').subarray(0, 128);
    await fc.assert(
      fc.asyncProperty(fc.uint8Array({ minLength: 0, maxLength: 40000 }), fc.boolean(), async (bytes, withHeader) => {
        const b = Buffer.from(bytes);
        if (withHeader && b.length >= 48) head.copy(b, 32, 32, 48);
        await checkOne(b);
      }),
      { numRuns: RUNS },
    );
  });
});

type Op =
  | { op: 'add'; kind: 'generic' | 'oci' | 'system' | 'primsys'; len: number; align: number }
  | { op: 'delete'; pick: number; zero: boolean; compact: boolean }
  | { op: 'prim'; pick: number };

const opArb: fc.Arbitrary<Op> = fc.oneof(
  fc.record({
    op: fc.constant('add' as const),
    kind: fc.constantFrom('generic' as const, 'oci' as const, 'system' as const, 'primsys' as const),
    len: fc.integer({ min: 0, max: 300 }),
    align: fc.constantFrom(0, 1, 4, 128, 4096),
  }),
  fc.record({ op: fc.constant('delete' as const), pick: fc.nat(), zero: fc.boolean(), compact: fc.boolean() }),
  fc.record({ op: fc.constant('prim' as const), pick: fc.nat() }),
);

describe('sif fuzz: random writer operation sequences', function () {
  this.timeout(120000);
  it('every intermediate image loads cleanly (no warnings) to exactly the writer’s view', async () => {
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 1, max: 6 }), fc.array(opArb, { maxLength: 12 }), async (capacity, ops) => {
        const m = new MemoryTarget();
        const w = await createSif(m, { deterministic: true, capacity });
        for (const o of ops) {
          const ids = w.descriptors.map((d) => d.id);
          try {
            if (o.op === 'add') {
              const data = Buffer.alloc(o.len, o.len & 0xff);
              const input =
                o.kind === 'generic'
                  ? { dataType: DataGeneric, data, alignment: o.align }
                  : o.kind === 'oci'
                    ? { dataType: DataOCIBlob, data, alignment: o.align }
                    : { dataType: DataPartition, data, alignment: o.align, partition: { fsType: 1, partType: o.kind === 'primsys' ? PartPrimSys : PartSystem, arch: 'arm64' } };
              await w.addObject(input);
            } else if (o.op === 'delete') {
              if (ids.length === 0) continue;
              await w.deleteObject(ids[o.pick % ids.length]!, { zero: o.zero, compact: o.compact });
            } else {
              if (ids.length === 0) continue;
              await w.setPrimaryPartition(ids[o.pick % ids.length]!);
            }
          } catch (err) {
            // Only the documented refusals are acceptable.
            expect(err).to.be.instanceOf(ImgmountError);
            expect((err as ImgmountError).code).to.equal('ERR_SIF_WRITE');
            expect((err as Error).message).to.match(/insufficient descriptor capacity|already contains a primary partition|not a partition|not a System one/);
          }
          const img = await loadSif(m.source());
          expect(img.warnings).to.deep.equal([]);
          expect(img.descriptors).to.deep.equal(w.descriptors);
          expect(img.header).to.deep.equal(w.header);
          expect(img.descriptors.filter((d) => d.partition?.partType === PartPrimSys).length).to.be.at.most(1);
          expect(img.header.arch).to.equal(img.descriptors.some((d) => d.partition?.partType === PartPrimSys) ? 'arm64' : 'unknown');
        }
      }),
      { numRuns: 100 },
    );
  });
});
