// The writer against every binary golden of sylabs/sif's pkg/sif tests (same inputs as the Go
// test cases), plus targets, argument checks and re-creating every fixture image.
import { expect } from 'chai';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Readable } from 'node:stream';
import { bufferSource } from '../../../lib/io/byte-source';
import {
  DataCryptoMessage,
  DataGeneric,
  DataOCIBlob,
  DataOCIRootIndex,
  DataPartition,
  DataSBOM,
  DataSignature,
  FsRaw,
  FsSquash,
  MemoryTarget,
  PartPrimSys,
  PartSystem,
  createSif,
  describeObjectInput,
  descriptorData,
  descriptorIntegrityBytes,
  fileHandleTarget,
  fdTarget,
  headerIntegrityBytes,
  loadSif,
  nextAligned,
  openSifWriter,
  relativeId,
} from '../../../lib/sif';
import type { CreateSifOptions, SifObjectInput, SifWriter } from '../../../lib/sif';
import { testTmp } from '../../support/hooks';
import { sifGoldenDir } from '../../support/paths';
import { expectCode, fixtureImages, readFixture } from './helpers';

const FACE = Buffer.from([0xfa, 0xce]);
const FEED = Buffer.from([0xfe, 0xed]);
const T = 946702800;
const ID = 'de170c43-36ab-44a8-bca9-1ea1a070a274';
const EMPTY_SHA256 = 'sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855';
const SET_DIGEST = 'sha256:93a6ab73f77ce27501f74bb35af9b4da5b964c62f96175a1bc0e8ba2ae0dec08';

const generic = (data: Buffer, more: Partial<SifObjectInput> = {}): SifObjectInput => ({ dataType: DataGeneric, data, ...more });
const part = (data: Buffer, fsType: number, partType: number, arch: string, more: Partial<SifObjectInput> = {}): SifObjectInput => ({
  dataType: DataPartition,
  data,
  partition: { fsType, partType, arch },
  ...more,
});
const oci = (data: Buffer): SifObjectInput => ({ dataType: DataOCIBlob, data });
const det: CreateSifOptions = { deterministic: true };
const withIdTime = (objects: SifObjectInput[] = []): CreateSifOptions => ({ id: ID, time: T, objects });

function golden(rel: string): Buffer {
  return fs.readFileSync(path.join(sifGoldenDir, `${rel}.golden`));
}

interface GoldenCase {
  name: string; // directory/case, as the golden file
  create: CreateSifOptions;
  /** The operation under test (after creation); may throw. */
  op?: (w: SifWriter) => Promise<unknown>;
  /** Expected failure of `op`: error code and message pattern. */
  err?: [string, RegExp?];
}

const cases: GoldenCase[] = [
  // ---- TestCreateContainer ----
  { name: 'TestCreateContainer/Empty', create: det },
  { name: 'TestCreateContainer/EmptyCloseOnUnload', create: det },
  { name: 'TestCreateContainer/EmptyLaunchScript', create: { ...det, launchScript: '#!/usr/bin/env launch-script\n' } },
  { name: 'TestCreateContainer/EmptyWithID', create: { ...det, id: ID } },
  { name: 'TestCreateContainer/EmptyWithTime', create: { ...det, time: T } },
  { name: 'TestCreateContainer/EmptyDescriptorLimitedCapacity', create: { ...det, capacity: 1 } },
  { name: 'TestCreateContainer/OneDescriptor', create: { ...det, objects: [generic(FACE)] } },
  { name: 'TestCreateContainer/TwoDescriptors', create: { ...det, objects: [generic(FACE), part(FEED, FsSquash, PartPrimSys, '386')] } },
  {
    name: 'TestCreateContainer/TwoDescriptorsNotAligned',
    create: { ...det, objects: [generic(FACE, { alignment: 0 }), part(FEED, FsSquash, PartPrimSys, '386', { alignment: 0 })] },
  },
  {
    name: 'TestCreateContainer/TwoDescriptorsAligned',
    create: { ...det, objects: [generic(FACE, { alignment: 4 }), part(FEED, FsSquash, PartPrimSys, '386', { alignment: 4 })] },
  },
  // ---- TestAddObject ----
  {
    name: 'TestAddObject/ErrInsufficientCapacity',
    create: { ...det, capacity: 0 },
    op: (w) => w.addObject(generic(FEED)),
    err: ['ERR_SIF_WRITE', /insufficient descriptor capacity/],
  },
  {
    name: 'TestAddObject/ErrPrimaryPartition',
    create: { ...det, objects: [part(FACE, FsSquash, PartPrimSys, '386')] },
    op: (w) => w.addObject(part(FEED, FsSquash, PartPrimSys, 'amd64')),
    err: ['ERR_SIF_WRITE', /image already contains a primary partition \(object 1\)/],
  },
  { name: 'TestAddObject/Deterministic', create: withIdTime(), op: (w) => w.addObject(generic(FACE), { time: null }) },
  { name: 'TestAddObject/WithTime', create: det, op: (w) => w.addObject(generic(FACE), { time: T }) },
  { name: 'TestAddObject/Empty', create: det, op: (w) => w.addObject(generic(FACE)) },
  { name: 'TestAddObject/EmptyNotAligned', create: det, op: (w) => w.addObject(generic(FACE, { alignment: 0 })) },
  { name: 'TestAddObject/EmptyAligned', create: det, op: (w) => w.addObject(generic(FACE, { alignment: 128 })) },
  { name: 'TestAddObject/NotEmpty', create: { ...det, objects: [generic(FACE)] }, op: (w) => w.addObject(part(FEED, FsSquash, PartPrimSys, '386')) },
  {
    name: 'TestAddObject/NotEmptyNotAligned',
    create: { ...det, objects: [generic(FACE)] },
    op: (w) => w.addObject(part(FEED, FsSquash, PartPrimSys, '386', { alignment: 0 })),
  },
  {
    name: 'TestAddObject/NotEmptyAligned',
    create: { ...det, objects: [generic(FACE)] },
    op: (w) => w.addObject(part(FEED, FsSquash, PartPrimSys, '386', { alignment: 128 })),
  },
  // ---- TestDeleteObject ----
  { name: 'TestDeleteObject/ErrObjectNotFound', create: det, op: (w) => w.deleteObject(1), err: ['ERR_SIF_NO_OBJECT', /no object with ID 1/] },
  {
    name: 'TestDeleteObject/Compact',
    create: { ...det, objects: [generic(FACE), generic(FEED)] },
    op: async (w) => {
      await w.deleteObject(1, { compact: true });
      await w.deleteObject(2, { compact: true });
    },
  },
  { name: 'TestDeleteObject/OneZero', create: { ...det, objects: [generic(FACE), generic(FEED)] }, op: (w) => w.deleteObject(1, { zero: true }) },
  { name: 'TestDeleteObject/OneCompact', create: { ...det, objects: [generic(FACE), generic(FEED)] }, op: (w) => w.deleteObject(1, { compact: true }) },
  {
    name: 'TestDeleteObject/OneZeroCompact',
    create: { ...det, objects: [generic(FACE), generic(FEED)] },
    op: (w) => w.deleteObject(1, { zero: true, compact: true }),
  },
  { name: 'TestDeleteObject/TwoZero', create: { ...det, objects: [generic(FACE), generic(FEED)] }, op: (w) => w.deleteObject(2, { zero: true }) },
  { name: 'TestDeleteObject/TwoCompact', create: { ...det, objects: [generic(FACE), generic(FEED)] }, op: (w) => w.deleteObject(2, { compact: true }) },
  {
    name: 'TestDeleteObject/TwoZeroCompact',
    create: { ...det, objects: [generic(FACE), generic(FEED)] },
    op: (w) => w.deleteObject(2, { zero: true, compact: true }),
  },
  { name: 'TestDeleteObject/Deterministic', create: withIdTime([generic(FACE)]), op: (w) => w.deleteObject(1, { time: null }) },
  { name: 'TestDeleteObject/WithTime', create: { ...det, objects: [generic(FACE)] }, op: (w) => w.deleteObject(1, { time: T }) },
  { name: 'TestDeleteObject/PrimaryPartition', create: { ...det, objects: [part(FACE, FsSquash, PartPrimSys, '386')] }, op: (w) => w.deleteObject(1) },
  // ---- TestDeleteObjects ----
  {
    name: 'TestDeleteObjects/ErrObjectNotFound',
    create: det,
    op: (w) => w.deleteObjects((d) => d.id === 1),
    err: ['ERR_SIF_NO_OBJECT', /no object in the image matches/],
  },
  {
    name: 'TestDeleteObjects/NilSelectFunc',
    create: { ...det, objects: [generic(FACE), generic(FEED)] },
    op: async (w) => w.deleteObjects(undefined as unknown as () => boolean),
    err: ['ERR_INVALID_ARG_TYPE', /"select" argument must be a function/],
  },
  {
    name: 'TestDeleteObjects/DataType',
    create: { ...det, objects: [generic(FACE), generic(FEED)] },
    op: (w) => w.deleteObjects((d) => d.dataType === DataGeneric),
  },
  {
    name: 'TestDeleteObjects/DataTypeCompact',
    create: { ...det, objects: [generic(FACE), generic(FEED)] },
    op: (w) => w.deleteObjects((d) => d.dataType === DataGeneric, { compact: true }),
  },
  {
    name: 'TestDeleteObjects/PrimaryPartitionCompact',
    create: { ...det, objects: [part(FACE, FsSquash, PartPrimSys, '386')] },
    op: (w) => w.deleteObjects((d) => d.partition?.partType === PartPrimSys, { compact: true }),
  },
  // ---- TestDeleteObjectAndAddObject ----
  ...(
    [
      ['Compact', { compact: true }],
      ['NoCompact', {}],
      ['Zero', { zero: true }],
      ['ZeroCompact', { zero: true, compact: true }],
    ] as const
  ).map(
    ([n, opts]): GoldenCase => ({
      name: `TestDeleteObjectAndAddObject/${n}`,
      create: { ...det, objects: [generic(Buffer.from('abc')), generic(Buffer.from('def'))] },
      op: async (w) => {
        await w.deleteObject(2, opts);
        await w.addObject(generic(Buffer.from('ghi')));
      },
    }),
  ),
  // ---- TestSetPrimPart ----
  { name: 'TestSetPrimPart/ErrObjectNotFound', create: det, op: (w) => w.setPrimaryPartition(1), err: ['ERR_SIF_NO_OBJECT'] },
  {
    name: 'TestSetPrimPart/Deterministic',
    create: withIdTime([part(FACE, FsRaw, PartSystem, '386')]),
    op: (w) => w.setPrimaryPartition(1, { time: null }),
  },
  {
    name: 'TestSetPrimPart/WithTime',
    create: { ...det, objects: [part(FACE, FsRaw, PartPrimSys, '386'), part(FEED, FsRaw, PartSystem, 'amd64')] },
    op: (w) => w.setPrimaryPartition(2, { time: T }),
  },
  { name: 'TestSetPrimPart/One', create: { ...det, objects: [part(FACE, FsRaw, PartSystem, '386')] }, op: (w) => w.setPrimaryPartition(1) },
  {
    name: 'TestSetPrimPart/Two',
    create: { ...det, objects: [part(FACE, FsRaw, PartPrimSys, '386'), part(FEED, FsRaw, PartSystem, 'amd64')] },
    op: (w) => w.setPrimaryPartition(2),
  },
  // ---- TestSetMetadata (metadata = OCI digest of no data) ----
  {
    name: 'TestSetMetadata/ErrObjectNotFound',
    create: det,
    op: (w) => w.setMetadata(1, Buffer.from(EMPTY_SHA256)),
    err: ['ERR_SIF_NO_OBJECT'],
  },
  { name: 'TestSetMetadata/Deterministic', create: withIdTime([oci(FACE)]), op: (w) => w.setMetadata(1, Buffer.from(EMPTY_SHA256), { time: null }) },
  { name: 'TestSetMetadata/WithTime', create: { ...det, objects: [oci(FACE)] }, op: (w) => w.setMetadata(1, Buffer.from(EMPTY_SHA256), { time: T }) },
  { name: 'TestSetMetadata/One', create: { ...det, objects: [oci(FACE)] }, op: (w) => w.setMetadata(1, Buffer.from(EMPTY_SHA256)) },
  { name: 'TestSetMetadata/Two', create: { ...det, objects: [oci(FACE), oci(FEED)] }, op: (w) => w.setMetadata(2, Buffer.from(EMPTY_SHA256)) },
  // ---- TestFileImage_SetOCIBlobDigest ----
  { name: 'TestFileImage_SetOCIBlobDigest/Deterministic', create: withIdTime([oci(FACE)]), op: (w) => w.setOCIBlobDigest(1, SET_DIGEST, { time: null }) },
  { name: 'TestFileImage_SetOCIBlobDigest/WithTime', create: { ...det, objects: [oci(FACE)] }, op: (w) => w.setOCIBlobDigest(1, SET_DIGEST, { time: T }) },
  { name: 'TestFileImage_SetOCIBlobDigest/One', create: { ...det, objects: [oci(FACE)] }, op: (w) => w.setOCIBlobDigest(1, SET_DIGEST) },
  { name: 'TestFileImage_SetOCIBlobDigest/Two', create: { ...det, objects: [oci(FACE), oci(FEED)] }, op: (w) => w.setOCIBlobDigest(2, SET_DIGEST) },
];

// TestCreateContainerAtPath: the same inputs as TestCreateContainer, written through a path.
const atPath = ['Empty', 'EmptyDescriptorLimitedCapacity', 'OneDescriptor', 'TwoDescriptors', 'TwoDescriptorsNotAligned', 'TwoDescriptorsAligned'];

describe('sif writer: byte-for-byte Go goldens', () => {
  it('every whole-image golden under pkg/sif/testdata has a case here', () => {
    const dirs = ['TestCreateContainer', 'TestCreateContainerAtPath', 'TestAddObject', 'TestDeleteObject', 'TestDeleteObjects', 'TestDeleteObjectAndAddObject', 'TestSetPrimPart', 'TestSetMetadata', 'TestFileImage_SetOCIBlobDigest'];
    const files = dirs.flatMap((d) => fs.readdirSync(path.join(sifGoldenDir, d)).map((f) => `${d}/${f.replace(/\.golden$/, '')}`));
    const covered = [...cases.map((c) => c.name), ...atPath.map((n) => `TestCreateContainerAtPath/${n}`)];
    expect(files.sort()).to.deep.equal(covered.sort());
    expect(files).to.have.length(60);
  });

  for (const c of cases) {
    it(`${c.name}${c.err ? ` (fails with ${c.err[0]}, image left as the golden)` : ''}`, async () => {
      const m = new MemoryTarget();
      const w = await createSif(m, c.create);
      if (c.op) {
        if (c.err) await expectCode(c.op(w), c.err[0], c.err[1]);
        else await c.op(w);
      }
      await w.close();
      const want = golden(c.name);
      const got = m.contents();
      expect(got.length, 'length').to.equal(want.length);
      expect(got.equals(want), 'bytes').to.equal(true);
      // The writer's own view agrees with a fresh load of what it wrote.
      const img = await loadSif(m.source());
      expect(img.warnings).to.deep.equal([]);
      expect(img.descriptors).to.deep.equal(w.descriptors);
      expect(img.header).to.deep.equal(w.header);
    });
  }

  for (const n of atPath) {
    it(`TestCreateContainerAtPath/${n} (through a path; file mode 0755)`, async () => {
      const c = cases.find((x) => x.name === `TestCreateContainer/${n}`)!;
      const p = path.join(testTmp, `at-path-${n}.sif`);
      fs.writeFileSync(p, Buffer.alloc(100000, 0x55)); // an existing longer file is truncated
      const w = await createSif(p, c.create);
      expect(w.path).to.equal(p);
      await w.close();
      expect(fs.readFileSync(p).equals(golden(`TestCreateContainerAtPath/${n}`))).to.equal(true);
      fs.rmSync(p);
      const w2 = await createSif(p, c.create);
      await w2.close();
      expect(fs.statSync(p).mode & 0o777).to.equal(0o755 & ~process.umask());
    });
  }

  it('TestCreateContainer/ErrInsufficientCapacity: refused before anything is written', async () => {
    const m = new MemoryTarget(Buffer.from('untouched'));
    await expectCode(createSif(m, { ...det, capacity: 0, objects: [generic(FACE)] }), 'ERR_SIF_WRITE', /insufficient descriptor capacity: 1 objects for 0 descriptor slots/);
    expect(m.contents().toString()).to.equal('untouched');
  });

  it('TestCreateContainerAtPath/ErrInsufficientCapacity and ErrDescriptorCapacityNotSupported leave no file', async () => {
    const p = path.join(testTmp, 'err-capacity.sif');
    await expectCode(createSif(p, { ...det, capacity: 0, objects: [generic(FACE)] }), 'ERR_SIF_WRITE', /insufficient/);
    expect(fs.existsSync(p)).to.equal(false);
    await expectCode(createSif(p, { capacity: 2 ** 32 - 1 }), 'ERR_SIF_WRITE', /descriptor capacity 4294967295 not supported: object IDs are 32-bit/);
    expect(fs.existsSync(p)).to.equal(false);
    await expectCode(createSif(p, { capacity: 1025 }), 'ERR_SIF_WRITE', /descriptor capacity 1025 not supported: loadSif accepts at most 1024/);
    expect(fs.existsSync(p)).to.equal(false);
  });

  it('TestFileImage_SetOCIBlobDigest/UnexpectedDataType: refused, image unchanged (= TestCreateContainer/OneDescriptor)', async () => {
    const m = new MemoryTarget();
    const w = await createSif(m, { ...det, objects: [generic(FACE)] });
    await expectCode(w.setOCIBlobDigest(1, SET_DIGEST), 'ERR_SIF_WRITE', /object 1 is Generic\/Raw data, not an OCI\.RootIndex or OCI\.Blob/);
    expect(m.contents().equals(golden('TestCreateContainer/OneDescriptor'))).to.equal(true);
  });

  it('TestSetPrimPart error paths: not a partition, not a System partition, already primary (no-op)', async () => {
    const m = new MemoryTarget();
    const w = await createSif(m, { ...det, objects: [generic(FACE), part(FACE, FsRaw, 3, '386'), part(FEED, FsSquash, PartPrimSys, '386')] });
    const before = m.contents();
    await expectCode(w.setPrimaryPartition(1), 'ERR_SIF_WRITE', /object 1 is Generic\/Raw data, not a partition/);
    await expectCode(w.setPrimaryPartition(2), 'ERR_SIF_WRITE', /object 2 is a Data partition, not a System one/);
    expect((await w.setPrimaryPartition(3, { time: T })).partition?.partType).to.equal(PartPrimSys);
    expect(m.contents().equals(before)).to.equal(true);
  });
});

describe('sif writer: descriptor encoding (TestNewDescriptorInput goldens)', () => {
  const fp = '12045C8C0B1004D058DE4BEDA20C27EE7FF7BA84';
  const inputs: Record<string, SifObjectInput> = {
    Empty: { dataType: DataGeneric },
    OptNoGroup: { dataType: DataGeneric, group: null },
    OptGroupID: { dataType: DataGeneric, group: 2 },
    OptLinkedID: { dataType: DataGeneric, link: { type: 'object', id: 1 } },
    OptLinkedGroupID: { dataType: DataGeneric, link: { type: 'group', id: 1 } },
    OptObjectAlignment: { dataType: DataGeneric, alignment: 8 },
    OptObjectName: { dataType: DataGeneric, name: 'name' },
    OptObjectTime: { dataType: DataGeneric, time: T },
    // Go's test marshals testMetadata{100} as JSON.
    OptMetadata: { dataType: DataGeneric, extra: Buffer.from(JSON.stringify({ Value: 100 })) },
    OptCryptoMessageMetadata: { dataType: DataCryptoMessage, cryptoMessage: { format: 1, message: 0x100 } },
    OptPartitionMetadata: { dataType: DataPartition, partition: { fsType: FsSquash, partType: PartPrimSys, arch: '386' } },
    OptSignatureMetadata: { dataType: DataSignature, signature: { hashType: 1, fingerprint: fp } },
    OptSBOMMetadata: { dataType: DataSBOM, sbom: { format: 1 } },
    DataOCIRootIndex: { dataType: DataOCIRootIndex },
    DataOCIBlob: { dataType: DataOCIBlob },
  };
  it('every TestNewDescriptorInput golden has an input here', () => {
    const files = fs.readdirSync(path.join(sifGoldenDir, 'TestNewDescriptorInput')).map((f) => f.replace(/\.golden$/, ''));
    expect(files.sort()).to.deep.equal(Object.keys(inputs).sort());
  });
  for (const [name, input] of Object.entries(inputs)) {
    it(name, () => {
      const got = describeObjectInput(input);
      expect(got).to.have.length(585);
      expect(got.equals(golden(`TestNewDescriptorInput/${name}`))).to.equal(true);
    });
  }
  it('signature fingerprint as bytes gives the same descriptor as hex', () => {
    const a = describeObjectInput({ dataType: DataSignature, signature: { hashType: 1, fingerprint: Buffer.from(fp, 'hex') } });
    expect(a.equals(golden('TestNewDescriptorInput/OptSignatureMetadata'))).to.equal(true);
  });

  const bad: Array<[string, SifObjectInput, string]> = [
    ['OptGroupIDInvalid', { dataType: DataGeneric, group: 0 }, 'ERR_INVALID_ARG_VALUE'],
    ['OptLinkedIDInvalid', { dataType: DataGeneric, link: { type: 'object', id: 0 } }, 'ERR_INVALID_ARG_VALUE'],
    ['OptLinkedGroupIDInvalid', { dataType: DataGeneric, link: { type: 'group', id: 0 } }, 'ERR_INVALID_ARG_VALUE'],
    ['OptCryptoMessageMetadataUnexpectedDataType', { dataType: DataGeneric, cryptoMessage: { format: 1, message: 0x100 } }, 'ERR_INVALID_ARG_VALUE'],
    ['OptPartitionMetadataUnexpectedDataType', { dataType: DataGeneric, partition: { fsType: 1, partType: 2, arch: '386' } }, 'ERR_INVALID_ARG_VALUE'],
    ['OptSignatureMetadataUnexpectedDataType', { dataType: DataGeneric, signature: { hashType: 1 } }, 'ERR_INVALID_ARG_VALUE'],
    ['OptSBOMMetadataUnexpectedDataType', { dataType: DataGeneric, sbom: { format: 1 } }, 'ERR_INVALID_ARG_VALUE'],
    ['unknown partition arch (Go: errUnknownArchitecture)', { dataType: DataPartition, partition: { fsType: 1, partType: 2, arch: 'vax' } }, 'ERR_INVALID_ARG_VALUE'],
    ['name of 129 bytes', { dataType: DataGeneric, name: 'x'.repeat(129) }, 'ERR_INVALID_ARG_VALUE'],
    ['extra of 385 bytes', { dataType: DataGeneric, extra: Buffer.alloc(385) }, 'ERR_INVALID_ARG_VALUE'],
    ['group above 0x0FFFFFFF', { dataType: DataGeneric, group: 0x10000000 }, 'ERR_INVALID_ARG_VALUE'],
    ['two kinds of metadata', { dataType: DataPartition, partition: { fsType: 1, partType: 2, arch: '386' }, extra: Buffer.alloc(1) }, 'ERR_INVALID_ARG_VALUE'],
    ['non-integer data type', { dataType: 1.5 }, 'ERR_INVALID_ARG_TYPE'],
    ['negative alignment', { dataType: DataGeneric, alignment: -1 }, 'ERR_INVALID_ARG_TYPE'],
    ['data of the wrong type', { dataType: DataGeneric, data: 'text' as unknown as Buffer }, 'ERR_INVALID_ARG_TYPE'],
  ];
  for (const [name, input, code] of bad) {
    it(`${name}: ${code}`, () => {
      let err: (Error & { code?: string }) | undefined;
      try {
        describeObjectInput(input);
      } catch (e) {
        err = e as Error & { code?: string };
      }
      expect(err?.code).to.equal(code);
    });
  }
  it('a name of exactly 128 bytes is fine', () => {
    const b = describeObjectInput({ dataType: DataGeneric, name: 'n'.repeat(128) });
    expect(b.subarray(73, 201).toString()).to.equal('n'.repeat(128));
  });
});

describe('sif writer: nextAligned (TestNextAligned)', () => {
  const max = 2n ** 63n - 1n;
  const ok: Array<[bigint, bigint, bigint]> = [
    [0n, 0n, 0n],
    [1n, 0n, 1n],
    [0n, 1024n, 0n],
    [1n, 1024n, 1024n],
    [1023n, 1024n, 1024n],
    [1024n, 1024n, 1024n],
    [1025n, 1024n, 2048n],
  ];
  for (const [off, a, want] of ok) it(`align ${off} to ${a} = ${want}`, () => expect(nextAligned(off, a)).to.equal(want));
  it('align max to 1024 overflows: ERR_SIF_WRITE', () => {
    expect(() => nextAligned(max, 1024)).to.throw(/overflows int64/).with.property('code', 'ERR_SIF_WRITE');
  });
  it('align max to max-1 overflows: ERR_SIF_WRITE', () => {
    expect(() => nextAligned(max, max - 1n)).to.throw(/overflows int64/).with.property('code', 'ERR_SIF_WRITE');
  });
});

describe('sif writer: targets, streams and argument checks', () => {
  it('writes through an fd and through a FileHandle (same bytes as memory)', async () => {
    const want = golden('TestCreateContainer/TwoDescriptors');
    const opts = cases.find((c) => c.name === 'TestCreateContainer/TwoDescriptors')!.create;
    const p1 = path.join(testTmp, 'fd.sif');
    const fd = fs.openSync(p1, 'w+');
    try {
      await (await createSif(fd, opts)).close();
      await (await createSif(fdTarget(fd), opts)).close();
    } finally {
      fs.closeSync(fd);
    }
    expect(fs.readFileSync(p1).equals(want)).to.equal(true);
    const p2 = path.join(testTmp, 'fh.sif');
    const fh = await fs.promises.open(p2, 'w+');
    try {
      await (await createSif(fh, opts)).close();
      await (await createSif(fileHandleTarget(fh), opts)).close();
    } finally {
      await fh.close();
    }
    expect(fs.readFileSync(p2).equals(want)).to.equal(true);
  });

  it('openSifWriter on a path modifies the file in place (delete + add = TestDeleteObjectAndAddObject/Compact)', async () => {
    const p = path.join(testTmp, 'reopen.sif');
    await (await createSif(p, { ...det, objects: [generic(Buffer.from('abc')), generic(Buffer.from('def'))] })).close();
    const w = await openSifWriter(p);
    await w.deleteObject(2, { compact: true });
    await w.close();
    const w2 = await openSifWriter(p);
    await w2.addObject(generic(Buffer.from('ghi')));
    await w2.close();
    expect(fs.readFileSync(p).equals(golden('TestDeleteObjectAndAddObject/Compact'))).to.equal(true);
    await expectCode(w2.addObject(generic(FACE)), 'ERR_SIF_WRITE', /closed/);
  });

  it('openSifWriter refuses what loadSif refuses', async () => {
    await expectCode(openSifWriter(new MemoryTarget(Buffer.from('not a sif'))), 'ERR_SIF_TRUNCATED');
    const p = path.join(testTmp, 'not-sif.bin');
    fs.writeFileSync(p, Buffer.alloc(200));
    await expectCode(openSifWriter(p), 'ERR_SIF_INVALID', /not-sif\.bin: not a SIF image/);
  });

  it('add + compacting delete on a real fixture gives back its exact bytes', async () => {
    const orig = readFixture('one-group.sif');
    const m = new MemoryTarget(orig);
    const w = await openSifWriter(m);
    const d = await w.addObject(generic(Buffer.from('temporary')));
    expect(d.id).to.equal(3);
    expect(m.contents().length).to.equal(orig.length + 9);
    await w.deleteObject(3, { compact: true });
    expect(m.contents().equals(orig)).to.equal(true);
  });

  it('streams data from an async iterable; OCI digests are computed while streaming', async () => {
    const chunks = [Buffer.from('{"schema'), Buffer.alloc(0), Buffer.from('Version":2}')];
    const whole = Buffer.concat(chunks);
    const a = new MemoryTarget();
    await createSif(a, { ...det, objects: [{ dataType: DataOCIBlob, data: Readable.from(chunks) }] });
    const b = new MemoryTarget();
    await createSif(b, { ...det, objects: [{ dataType: DataOCIBlob, data: whole }] });
    expect(a.contents().equals(b.contents())).to.equal(true);
    const img = await loadSif(a.source());
    expect(img.descriptors[0]!.ociDigest).to.equal('sha256:' + createHash('sha256').update(whole).digest('hex'));
    expect((await descriptorData(a.source(), img.descriptors[0]!)).equals(whole)).to.equal(true);
  });

  it('operations on one writer run in call order', async () => {
    const m = new MemoryTarget();
    const w = await createSif(m, det);
    const [d1, d2] = await Promise.all([w.addObject(generic(FACE)), w.addObject(generic(FEED))]);
    expect([d1.id, d2.id, d1.offset, d2.offset]).to.deep.equal([1, 2, 32176, 32178]);
    const [r1, r2] = await Promise.allSettled([w.deleteObject(7), w.deleteObject(1)]);
    expect(r1.status).to.equal('rejected');
    expect(r2.status).to.equal('fulfilled');
    expect(w.descriptors.map((d) => d.id)).to.deep.equal([2]);
  });

  it('a failed operation leaves the writer state and the image as they were', async () => {
    const m = new MemoryTarget();
    let failAt = -1; // fail writes at this offset
    const flaky = {
      size: () => m.size(),
      read: (o: number, l: number) => m.read(o, l),
      truncate: (l: number) => m.truncate(l),
      write: async (o: number, d: Uint8Array) => {
        if (o === failAt) throw Object.assign(new Error('EIO'), { code: 'EIO', errno: -5, syscall: 'write' });
        return m.write(o, d);
      },
    };
    const w = await createSif(flaky, { ...det, objects: [generic(FACE), part(FEED, FsRaw, PartSystem, '386')] });
    const before = m.contents();
    const view = [w.header, w.descriptors];
    failAt = 4096; // the table write
    const e = await expectCode(w.addObject(part(FACE, FsSquash, PartPrimSys, 'amd64')), 'EIO', /writing SIF image/);
    expect(e.name).to.equal('SystemError');
    await expectCode(w.setPrimaryPartition(2), 'EIO');
    await expectCode(w.setMetadata(1, Buffer.from('x')), 'EIO');
    await expectCode(w.deleteObject(1, { compact: true }), 'EIO');
    expect([w.header, w.descriptors]).to.deep.equal(view);
    // The data of the failed add went past the old end; table and header still describe the old image.
    const img = await loadSif(m.source());
    expect(img.descriptors).to.deep.equal(view[1]);
    expect(m.contents().length).to.be.greaterThan(before.length);
    expect(m.contents().subarray(0, before.length).equals(before)).to.equal(true);
    failAt = -1;
    let calls = 0;
    await expectCode(
      w.deleteObjects(() => {
        if (++calls === 2) throw Object.assign(new Error('selector failed'), { code: 'ESEL' });
        return true;
      }),
      'ESEL',
    );
    expect([w.header, w.descriptors]).to.deep.equal(view);
    expect((await w.addObject(generic(FEED))).id).to.equal(3);
  });

  it('default times: now for normal images, Go zero for deterministic ones', async () => {
    // "Now" is whatever the clock says when the call runs: a clock set by the test, not a
    // window around the real one.
    const realNow = Date.now;
    let clock = 1_700_000_000_900; // ms; the writer keeps whole seconds
    Date.now = () => clock;
    let w: SifWriter;
    let d: Awaited<ReturnType<SifWriter['addObject']>>;
    try {
      w = await createSif(new MemoryTarget(), { objects: [generic(FACE)] });
      clock = 1_700_000_042_000;
      d = await w.addObject(generic(FEED));
    } finally {
      Date.now = realNow;
    }
    const h = w.header;
    expect(h.uuid).to.match(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    expect(h.createdAt).to.equal(1_700_000_000);
    expect(w.descriptors[0]!.createdAt).to.equal(h.createdAt);
    expect(d.createdAt).to.equal(1_700_000_042);
    expect(h.modifiedAt).to.equal(1_700_000_042);
    const wd = await createSif(new MemoryTarget(), det);
    expect((await wd.addObject(generic(FEED))).createdAt).to.equal(null);
    expect(wd.header.modifiedAt).to.equal(null);
    // An object's own time wins; 0 is a real time.
    expect((await wd.addObject(generic(FEED, { time: 0 }))).createdAt).to.equal(0);
  });

  it('argument checks', async () => {
    const m = new MemoryTarget();
    await expectCode(createSif(m, { launchScript: 'x'.repeat(32) }), 'ERR_INVALID_ARG_VALUE', /shorter than 32 bytes/);
    await expectCode(createSif(m, { id: 'not-a-uuid' }), 'ERR_INVALID_ARG_VALUE');
    await expectCode(createSif(m, { capacity: -1 }), 'ERR_INVALID_ARG_TYPE');
    await expectCode(createSif(m, { time: 1.5 }), 'ERR_INVALID_ARG_TYPE');
    await expectCode(createSif(m, { objects: [generic(FACE), { dataType: DataGeneric, group: 0 }] }), 'ERR_INVALID_ARG_VALUE', /objects\[1\]\.group/);
    await expectCode(
      createSif(m, { objects: [part(FACE, 1, PartPrimSys, '386'), part(FEED, 1, PartPrimSys, 'amd64')] }),
      'ERR_SIF_WRITE',
      /primary partition/,
    );
    await expectCode(createSif({} as unknown as string), 'ERR_INVALID_ARG_TYPE');
    expect(m.contents()).to.have.length(0);
    const w = await createSif(m, det);
    await expectCode(w.deleteObject(0), 'ERR_INVALID_ARG_VALUE');
    await expectCode(w.setMetadata(1, Buffer.alloc(385)), 'ERR_INVALID_ARG_VALUE');
    await expectCode(w.setOCIBlobDigest(1, 'sha256:ABC'), 'ERR_INVALID_ARG_VALUE');
    await expectCode(w.addObject(generic(FACE), { time: 'now' as unknown as number }), 'ERR_INVALID_ARG_TYPE');
  });

  it('launch script of 31 bytes, UUID as bytes, capacity 0', async () => {
    const m = new MemoryTarget();
    const w = await createSif(m, { launchScript: '#!/usr/bin/env run-singularity\n', id: Buffer.alloc(16, 0xab), time: 5, capacity: 0 });
    const img = await loadSif(m.source());
    expect(img.header.launchScript).to.equal('#!/usr/bin/env run-singularity\n');
    expect(img.header.uuid).to.equal('abababab-abab-abab-abab-abababababab');
    expect([img.header.createdAt, img.header.descriptorsTotal, img.size]).to.deep.equal([5, 0, 4096]);
    expect(w.header).to.deep.equal(img.header);
  });
});

describe('sif writer: re-creating every fixture from its loaded descriptors', () => {
  for (const rel of fixtureImages) {
    it(`${rel}: same descriptors, data, and integrity digests (so signatures stay valid)`, async () => {
      const buf = readFixture(rel);
      const src = bufferSource(buf);
      const img = await loadSif(src);
      const objects: SifObjectInput[] = [];
      for (const d of img.descriptors) {
        objects.push({
          dataType: d.dataType,
          data: await descriptorData(src, d),
          name: d.nameBytes.subarray(0, d.nameBytes.length - [...d.nameBytes].reverse().findIndex((b) => b !== 0) || 0),
          group: d.groupId === 0 ? null : d.groupId,
          link: d.link,
          time: d.createdAt,
          uid: d.uid,
          gid: d.gid,
          extra: d.extra,
        });
      }
      const m = new MemoryTarget();
      const ls = img.header.launchScriptBytes;
      await createSif(m, {
        launchScript: ls.subarray(0, ls.indexOf(0) < 0 ? ls.length : ls.indexOf(0)),
        id: img.header.uuidBytes,
        time: img.header.createdAt,
        capacity: img.header.descriptorsTotal,
        objects,
      });
      const back = await loadSif(m.source());
      expect(back.warnings).to.deep.equal([]);
      const strip = (d: (typeof img.descriptors)[number]) => {
        const { offset: _o, sizeWithPadding: _s, raw: _r, ...rest } = d;
        return rest;
      };
      expect(back.descriptors.map(strip)).to.deep.equal(img.descriptors.map(strip));
      expect(back.header.arch).to.equal(img.header.arch);
      expect([back.header.uuid, back.header.launchScript, back.header.createdAt]).to.deep.equal([img.header.uuid, img.header.launchScript, img.header.createdAt]);
      expect(headerIntegrityBytes(back.header).equals(headerIntegrityBytes(img.header))).to.equal(true);
      for (const [i, d] of back.descriptors.entries()) {
        const o = img.descriptors[i]!;
        expect((await descriptorData(m.source(), d)).equals(await descriptorData(src, o))).to.equal(true);
        expect(descriptorIntegrityBytes(d, relativeId(back, d)).equals(descriptorIntegrityBytes(o, relativeId(img, o)))).to.equal(true);
      }
    });
  }

  it('deterministic fixtures are reproduced byte for byte', async () => {
    // one-group.sif was written by the current Go writer: partitions aligned to 4096.
    const m = new MemoryTarget();
    await createSif(m, { ...det, objects: [part(Buffer.from('facefeed', 'hex'), FsRaw, PartSystem, '386'), part(readFixture('input/root.squashfs'), FsSquash, PartPrimSys, '386')] });
    expect(m.contents().equals(readFixture('one-group.sif'))).to.equal(true);
    const m2 = new MemoryTarget();
    await createSif(m2, { ...det, objects: [{ dataType: DataOCIBlob, data: readFixture('input/oci-config.json') }] });
    expect(m2.contents().equals(readFixture('one-object-oci-blob.sif'))).to.equal(true);
  });
});
