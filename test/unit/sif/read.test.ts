// loadSif against every real fixture (field by field with the independent parser's dump), the
// writer goldens as read fixtures, and malformed / edge-case input built by patching bytes.
import { expect } from 'chai';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ImgmountError } from '../../../lib/errors';
import { bufferSource } from '../../../lib/io/byte-source';
import type { ByteSource } from '../../../lib/io/byte-source';
import {
  DESCRIPTOR_SIZE,
  DataGeneric,
  DataPartition,
  DataSBOM,
  GO_ZERO_TIME,
  HEADER_SIZE,
  MAX_DESCRIPTORS,
  MemoryTarget,
  PartPrimSys,
  PartSystem,
  archBytesFromName,
  archNameFromBytes,
  createSif,
  dataTypeName,
  descriptorData,
  findPrimaryPartitions,
  fsTypeName,
  loadSif,
  partTypeName,
  relativeId,
  sbomFormatName,
} from '../../../lib/sif';
import type { SifDescriptor, SifImage } from '../../../lib/sif';
import { D, H } from '../../../lib/sif/codec';
import { sifFixturesDir } from '../../support/paths';
import { expectCode, fixtureImages, parseDump, readFixture } from './helpers';
import type { DumpImage } from './helpers';

const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');
const load = (b: Buffer) => loadSif(bufferSource(b));

/** Checks one loaded image against one dump record, field by field. */
async function compareWithDump(img: SifImage, dump: DumpImage, source: ByteSource): Promise<void> {
  const h = img.header;
  const at = (what: string) => `${dump.file}: ${what}`;
  expect(img.size, at('size')).to.equal(dump.size);
  expect(h.launchScriptBytes.subarray(0, dump.launch.length).equals(dump.launch), at('launch')).to.equal(true);
  expect(h.launchScriptBytes.subarray(dump.launch.length).every((b) => b === 0), at('launch padding')).to.equal(true);
  expect(h.launchScript, at('launch text')).to.equal(dump.launch.toString('latin1'));
  expect(h.raw.subarray(H.magic, H.magic + 10).equals(dump.magic), at('magic')).to.equal(true);
  expect(h.version, at('version')).to.equal(dump.version.toString('latin1').replace(/\0+$/, ''));
  expect(h.raw.subarray(H.arch, H.arch + 3).equals(dump.arch), at('arch bytes')).to.equal(true);
  expect(h.arch, at('arch')).to.equal(dump.archName);
  expect(h.uuid, at('uuid')).to.equal(/^[0-]+$/.test(dump.id) ? null : dump.id);
  expect(h.createdAt, at('created')).to.equal(dump.created.unset ? null : dump.created.value);
  expect(h.modifiedAt, at('modified')).to.equal(dump.modified.unset ? null : dump.modified.value);
  expect(
    [h.descriptorsFree, h.descriptorsTotal, h.descriptorsOffset, h.descriptorsSize, h.dataOffset, h.dataSize],
    at('counts'),
  ).to.deep.equal([dump.free, dump.total, dump.descOffset, dump.descSize, dump.dataOffset, dump.dataSize]);

  expect(img.descriptors.map((d) => d.slot), at('used slots')).to.deep.equal(dump.slots.map((s) => s.slot));
  for (const [i, s] of dump.slots.entries()) {
    const d = img.descriptors[i]!;
    const o = (what: string) => at(`object ${s.id} ${what}`);
    expect(d.id, o('id')).to.equal(s.id);
    expect(d.dataType, o('type')).to.equal(s.type);
    expect(d.dataTypeName, o('type name')).to.equal(s.typeName);
    expect(d.groupIdRaw, o('group raw')).to.equal(s.groupRaw);
    expect(d.groupId, o('group')).to.equal(s.group ?? 0);
    expect(d.linkedIdRaw, o('link raw')).to.equal(s.linkRaw);
    expect(d.link, o('link')).to.deep.equal(s.link);
    expect(d.offset, o('offset')).to.equal(s.offset);
    expect(d.size, o('size')).to.equal(s.size);
    expect(d.sizeWithPadding, o('sizeWithPadding')).to.equal(s.sizeWithPadding);
    expect(d.createdAt, o('created')).to.equal(s.created.unset ? null : s.created.value);
    expect(d.modifiedAt, o('modified')).to.equal(s.modified.unset ? null : s.modified.value);
    expect([d.uid, d.gid], o('uid/gid')).to.deep.equal([s.uid, s.gid]);
    expect(d.nameBytes.subarray(0, s.name.length).equals(s.name), o('name bytes')).to.equal(true);
    expect(d.name, o('name')).to.equal(s.name.toString('utf8'));
    if (s.partition) {
      const p = s.partition;
      expect(d.partition, o('partition')).to.deep.equal({
        fsType: p.fsType,
        fsTypeName: p.fsTypeName,
        partType: p.partType,
        partTypeName: p.partTypeName,
        arch: p.archName,
        archCode: p.arch.toString('latin1').replace(/\0+$/, ''),
      });
      expect(d.extra.subarray(8, 11).equals(p.arch), o('partition arch bytes')).to.equal(true);
      expect(d.extra.subarray(11).every((b) => b === 0), o('partition extra tail')).to.equal(p.tailZero);
    } else expect(d.partition, o('no partition')).to.equal(undefined);
    if (s.signature) {
      expect(d.signature, o('signature')).to.deep.equal({
        hashType: s.signature.hashType,
        hashTypeName: s.signature.hashTypeName,
        fingerprint: s.signature.fingerprint,
      });
      expect(d.extra.subarray(24).every((b) => b === 0), o('signature extra tail')).to.equal(s.signature.tailZero);
    } else expect(d.signature, o('no signature')).to.equal(undefined);
    if (s.crypto) {
      expect(d.cryptoMessage, o('crypto')).to.deep.equal({
        format: s.crypto.format,
        formatName: s.crypto.formatName,
        message: s.crypto.message,
        messageName: s.crypto.messageName,
      });
    } else expect(d.cryptoMessage, o('no crypto')).to.equal(undefined);
    if (s.sbom) expect(d.sbom, o('sbom')).to.deep.equal({ format: s.sbom.format, formatName: s.sbom.formatName });
    else expect(d.sbom, o('no sbom')).to.equal(undefined);
    expect(d.ociDigest, o('oci digest')).to.equal(s.ociDigest);
    expect(s.dataSha256Prefix, o('dump has a data digest')).to.match(/^[0-9a-f]{16}$/);
    const data = await descriptorData(source, d);
    expect(data.length, o('data length')).to.equal(s.size);
    expect(sha256(data).slice(0, s.dataSha256Prefix.length), o('data sha256')).to.equal(s.dataSha256Prefix);
    if (s.ociDigest !== undefined) {
      expect(s.ociDigestMatches, o('dump has a digest verdict')).to.be.a('boolean');
      expect(d.ociDigest === 'sha256:' + sha256(data), o('oci digest = sha256(data)')).to.equal(s.ociDigestMatches);
    }
  }
}

describe('sif: loadSif on real images', () => {
  const dump = parseDump(fs.readFileSync(path.join(sifFixturesDir, 'parser-output.txt'), 'utf8'));
  const ociDigests: Record<string, string[]> = {
    'one-object-oci-blob.sif': ['sha256:a88b15e9…c731'],
    'one-object-oci-root-index.sif': ['sha256:2dc692f0…cffb'],
  };

  it('the dump describes exactly the 23 fixture images', () => {
    expect(fixtureImages).to.have.length(23);
    expect(dump.map((d) => d.file).sort()).to.deep.equal(fixtureImages.map((f) => path.basename(f)).sort());
  });

  for (const rel of fixtureImages) {
    it(`${rel} matches parser-output.txt field by field, with no warnings`, async () => {
      const buf = readFixture(rel);
      const d = dump.find((x) => x.file === path.basename(rel))!;
      expect(sha256(buf), 'fixture bytes are the ones the dump describes').to.equal(d.sha256);
      expect(d.valid).to.equal(true);
      const src = bufferSource(buf);
      const img = await loadSif(src);
      expect(img.warnings).to.deep.equal([]);
      await compareWithDump(img, d, src);
      // README: the OCI objects carry the sha256 of their own data, and which digest that is.
      const oci = img.descriptors.filter((x) => x.ociDigest !== undefined);
      expect(oci.map((x) => x.ociDigest!.replace(/^(sha256:.{8}).*(.{4})$/, '$1…$2'))).to.deep.equal(ociDigests[path.basename(rel)] ?? []);
      for (const x of oci) expect(x.ociDigest).to.equal('sha256:' + sha256(await descriptorData(src, x)));
    });
  }

  it('reads only the header and the table (never object data)', async () => {
    const buf = readFixture('two-groups.sif');
    const reads: Array<[number, number]> = [];
    const src: ByteSource = {
      size: buf.length,
      read: async (o, l) => {
        reads.push([o, l]);
        return buf.subarray(o, o + l);
      },
    };
    await loadSif(src);
    expect(reads).to.deep.equal([
      [0, 128],
      [4096, 48 * 585],
    ]);
  });

  it('works over a file descriptor (fdSource) as over a buffer', async () => {
    const { fdSource } = await import('../../../lib/io/byte-source');
    const p = path.join(sifFixturesDir, 'apptainer', 'busybox_amd64.sif');
    const fd = fs.openSync(p, 'r');
    try {
      const img = await loadSif(fdSource(fd, fs.fstatSync(fd).size), { path: p });
      const fromBuf = await load(fs.readFileSync(p));
      expect(img.descriptors).to.deep.equal(fromBuf.descriptors);
      const def = img.descriptors.find((d) => d.dataTypeName === 'Def.FILE')!;
      expect((await descriptorData(fdSource(fd, img.size), def)).toString()).to.match(/^BootStrap/);
    } finally {
      fs.closeSync(fd);
    }
  });

  it('findPrimaryPartitions / descriptorData ranges / OCI digests', async () => {
    const buf = readFixture('two-groups.sif');
    const img = await load(buf);
    expect(findPrimaryPartitions(img).map((d) => d.id)).to.deep.equal([2]);
    const squash = img.descriptors[1]!;
    expect((await descriptorData(bufferSource(buf), squash, { start: 0, length: 4 })).toString('latin1')).to.equal('hsqs');
    expect(await descriptorData(bufferSource(buf), squash, { start: 4096 })).to.have.length(0);
    await expectCode(descriptorData(bufferSource(buf), squash, { start: 4097 }), 'ERR_OUT_OF_RANGE');
    await expectCode(descriptorData(bufferSource(buf), squash, { start: 10, length: 4090 }), 'ERR_OUT_OF_RANGE');
    // A source shorter than the object: refused, not a short buffer.
    await expectCode(descriptorData(bufferSource(buf.subarray(0, 38000)), squash), 'ERR_SIF_TRUNCATED', /object 2 .*36864-40960/);
  });
});

describe('sif: loadSif on the writer goldens (as read fixtures)', () => {
  const dump = parseDump(fs.readFileSync(path.join(sifFixturesDir, 'parser-output-writer-goldens.txt'), 'utf8'));
  it('the dump covers 60 goldens', () => expect(dump).to.have.length(60));
  for (const d of dump) {
    it(`${d.file.replace('golden/pkg/sif/testdata/', '')} matches its dump`, async () => {
      const buf = fs.readFileSync(path.join(sifFixturesDir, d.file));
      const src = bufferSource(buf);
      const img = await loadSif(src);
      expect(img.warnings).to.deep.equal([]);
      await compareWithDump(img, d, src);
    });
  }
});

// ---- malformed input ----

const base = () => readFixture('one-group.sif'); // 40960 bytes, objects 1 (32768+4) and 2 (36864+4096)
const slotAt = (slot: number) => 4096 + slot * DESCRIPTOR_SIZE;
function setI64(b: Buffer, off: number, v: bigint | number): Buffer {
  b.writeBigInt64LE(BigInt(v), off);
  return b;
}

describe('sif: malformed input fails cleanly', () => {
  for (const n of [0, 1, 64, 127]) {
    it(`truncated to ${n} bytes: ERR_SIF_TRUNCATED (shorter than the header)`, async () => {
      await expectCode(load(base().subarray(0, n)), 'ERR_SIF_TRUNCATED', new RegExp(`file is ${n} bytes`));
    });
  }

  it('truncated to 128 bytes: ERR_SIF_TRUNCATED naming the table range', async () => {
    await expectCode(load(base().subarray(0, 128)), 'ERR_SIF_TRUNCATED', /descriptor table \(bytes 4096-32176.*128-byte file/);
  });

  it('truncated mid-table: ERR_SIF_TRUNCATED', async () => {
    await expectCode(load(base().subarray(0, slotAt(10) + 7)), 'ERR_SIF_TRUNCATED', /descriptor table/);
  });

  it('truncated mid-object: ERR_SIF_TRUNCATED naming object id, name, range and file size', async () => {
    const e = await expectCode(load(base().subarray(0, 38000)), 'ERR_SIF_TRUNCATED');
    expect(e.message).to.equal('object 2 ("") occupies bytes 36864-40960 but the file is only 38000 bytes long');
    expect(e.details).to.deep.include({ id: 2, name: '', offset: 36864, size: 4096, end: 40960, fileSize: 38000 });
  });

  it('a short read from the source is ERR_SIF_TRUNCATED, not garbage', async () => {
    const buf = base();
    const lying: ByteSource = { size: buf.length, read: async (o, l) => buf.subarray(o, Math.min(o + l, 20000)) };
    await expectCode(loadSif(lying), 'ERR_SIF_TRUNCATED', /short read of the descriptor table/);
    const lying2: ByteSource = { size: buf.length, read: async () => Buffer.alloc(10) };
    await expectCode(loadSif(lying2), 'ERR_SIF_TRUNCATED', /short read of the SIF header/);
  });

  for (let i = 0; i < 10; i++) {
    it(`magic byte ${i} flipped: ERR_SIF_INVALID "bad magic" (field magic, offset 32)`, async () => {
      const b = base();
      b[32 + i] ^= 0x01;
      const e = await expectCode(load(b), 'ERR_SIF_INVALID', /not a SIF image: bad magic at byte offset 32/);
      expect(e.details).to.deep.include({ field: 'magic', offset: 32 });
    });
  }

  it('"SIF_MAGIX" (the Go test case) is rejected', async () => {
    const b = base();
    b.write('X', 40, 'latin1');
    await expectCode(load(b), 'ERR_SIF_INVALID', /found "SIF_MAGIX\\0"/);
  });

  const versions: Array<[string, number[]]> = [
    ['"00"', [0x30, 0x30, 0]],
    ['"02"', [0x30, 0x32, 0]],
    ['"1\\0\\0"', [0x31, 0, 0]],
    ['"01" without NUL', [0x30, 0x31, 0x20]],
    ['"01" followed by "1"', [0x30, 0x31, 0x31]],
  ];
  for (const [label, bytes] of versions) {
    it(`version ${label}: ERR_SIF_UNSUPPORTED_VERSION carrying the raw bytes`, async () => {
      const b = base();
      Buffer.from(bytes).copy(b, 42);
      const e = await expectCode(load(b), 'ERR_SIF_UNSUPPORTED_VERSION', /unsupported SIF version .* at byte offset 42/);
      expect(e.details?.version).to.deep.equal(bytes);
    });
  }

  const fields = ['descriptorsFree', 'descriptorsTotal', 'descriptorsOffset', 'descriptorsSize', 'dataOffset', 'dataSize'] as const;
  for (const field of fields) {
    for (const v of [-1n, -(2n ** 63n), 2n ** 53n, 2n ** 62n, 2n ** 63n - 1n]) {
      it(`header ${field} = ${v}: ERR_SIF_INVALID naming the field and offset`, async () => {
        const e = await expectCode(load(setI64(base(), H[field], v)), 'ERR_SIF_INVALID', new RegExp(`header field ${field} at byte offset ${H[field]} is ${v}`));
        expect(e.details).to.deep.include({ field, offset: H[field], value: v.toString() });
      });
    }
  }

  it('descriptorsTotal 2^62, 2^53-1 and MAX_DESCRIPTORS+1 are refused after reading the header alone', async () => {
    for (const v of [2n ** 62n, 2n ** 53n - 1n, BigInt(MAX_DESCRIPTORS) + 1n]) {
      const b = setI64(setI64(base(), H.descriptorsTotal, v), H.descriptorsSize, 2n ** 53n - 1n);
      setI64(b, H.descriptorsFree, 0);
      const inner = bufferSource(b);
      const asked: number[] = [];
      const source: ByteSource = { size: inner.size, read: (offset, length) => (asked.push(length), inner.read(offset, length)) };
      await expectCode(loadSif(source), 'ERR_SIF_INVALID', /descriptorsTotal/);
      expect(asked).to.deep.equal([HEADER_SIZE]);
    }
  });

  it('descriptorsFree > descriptorsTotal: ERR_SIF_INVALID', async () => {
    await expectCode(load(setI64(base(), H.descriptorsFree, 49)), 'ERR_SIF_INVALID', /descriptorsFree \(49\) is larger than descriptorsTotal \(48\)/);
  });

  it('descriptorsSize < total × 585: ERR_SIF_INVALID', async () => {
    await expectCode(load(setI64(base(), H.descriptorsSize, 28079)), 'ERR_SIF_INVALID', /descriptorsSize \(28079\) is smaller than/);
    await expectCode(load(setI64(base(), H.descriptorsTotal, 49)), 'ERR_SIF_INVALID', /descriptorsSize/);
  });

  it('descriptor table past EOF: ERR_SIF_TRUNCATED', async () => {
    await expectCode(load(setI64(base(), H.descriptorsOffset, 40000)), 'ERR_SIF_TRUNCATED', /descriptor table \(bytes 40000-68080/);
    await expectCode(load(setI64(base(), H.descriptorsOffset, 2 ** 53 - 1)), 'ERR_SIF_TRUNCATED');
  });

  it('object ID 0: ERR_SIF_INVALID naming slot and byte offset', async () => {
    const b = base();
    b.writeUInt32LE(0, slotAt(1) + D.id);
    await expectCode(load(b), 'ERR_SIF_INVALID', /descriptor slot 1 \(byte offset 4681\): object ID is 0/);
  });

  it('duplicate object IDs: ERR_SIF_INVALID', async () => {
    const b = base();
    b.writeUInt32LE(1, slotAt(1) + D.id);
    await expectCode(load(b), 'ERR_SIF_INVALID', /descriptor slot 1 .*object ID 1 is already used by slot 0/);
  });

  for (const [field, v] of [
    ['offset', -1n],
    ['size', -1n],
    ['offset', 2n ** 53n],
    ['size', 2n ** 62n],
    ['offset', -(2n ** 63n)],
  ] as const) {
    it(`object ${field} = ${v}: ERR_SIF_INVALID`, async () => {
      const e = await expectCode(load(setI64(base(), slotAt(1) + D[field], v)), 'ERR_SIF_INVALID', new RegExp(`object 2 ${field} is ${v}`));
      expect(e.details).to.deep.include({ id: 2, field });
    });
  }

  it('object past EOF (offset + size > file length): ERR_SIF_TRUNCATED', async () => {
    await expectCode(load(setI64(base(), slotAt(0) + D.size, 8193)), 'ERR_SIF_TRUNCATED', /object 1 \(""\) occupies bytes 32768-40961/);
    await expectCode(load(setI64(base(), slotAt(0) + D.offset, 2 ** 53 - 2)), 'ERR_SIF_TRUNCATED');
  });

  it('all of these errors are ImgmountErrors with a message and code', async () => {
    const e = await expectCode(load(Buffer.alloc(0)), 'ERR_SIF_TRUNCATED');
    expect(e).to.be.instanceOf(ImgmountError);
    expect(e.name).to.equal('ImgmountError');
    const withPath = await loadSif(bufferSource(Buffer.alloc(3)), { path: '/x/y.sif' }).catch((err) => err);
    expect(withPath.path).to.equal('/x/y.sif');
    expect(withPath.message).to.match(/^\/x\/y\.sif: /);
  });
});

describe('sif: tolerated oddities, warnings and value edge cases', () => {
  it('unused slots full of garbage are skipped, not an error', async () => {
    const b = base();
    for (const s of [2, 3, 47]) {
      b.fill(0xff, slotAt(s), slotAt(s) + DESCRIPTOR_SIZE);
      b[slotAt(s) + D.used] = 0;
    }
    const img = await load(b);
    expect(img.warnings).to.deep.equal([]);
    expect(img.descriptors.map((d) => d.id)).to.deep.equal([1, 2]);
  });

  it('any non-zero Used byte marks a slot used (Go decodes bool as != 0)', async () => {
    const b = base();
    b[slotAt(0) + D.used] = 0x02;
    expect((await load(b)).descriptors.map((d) => d.id)).to.deep.equal([1, 2]);
  });

  it('warns when used slots disagree with total − free', async () => {
    const img = await load(setI64(base(), H.descriptorsFree, 40));
    expect(img.warnings).to.have.length(1);
    expect(img.warnings[0]).to.match(/header says 8 descriptors are used .* but 2 slots are marked used/);
  });

  it('warns when DataOffset lies inside the table', async () => {
    const img = await load(setI64(base(), H.dataOffset, 4096));
    expect(img.warnings[0]).to.match(/data section offset 4096 lies inside the descriptor table \(bytes 4096-32176\)/);
  });

  it('warns when the table overlaps the header', async () => {
    // One slot at byte 100: its Used byte is descriptorsSize's low byte, 0 for 768.
    const b = Buffer.alloc(1024);
    readFixture('empty.sif').copy(b, 0, 0, 128);
    setI64(b, H.descriptorsTotal, 1);
    setI64(b, H.descriptorsFree, 1);
    setI64(b, H.descriptorsOffset, 100);
    setI64(b, H.descriptorsSize, 768);
    setI64(b, H.dataOffset, 685);
    const img = await load(b);
    expect(img.warnings).to.deep.equal(['descriptor table at byte offset 100 overlaps the 128-byte header']);
    expect(img.descriptors).to.deep.equal([]);
  });

  it('warns about objects outside [DataOffset, DataOffset + DataSize]', async () => {
    const img = await load(setI64(base(), H.dataSize, 100));
    expect(img.warnings.join('\n')).to.match(/object 1 \(bytes 32768-32772\) lies outside the data section \(bytes 32176-32276\)/);
    expect(img.warnings.join('\n')).to.match(/object 2 /);
    const img2 = await load(setI64(base(), H.dataOffset, 33000));
    expect(img2.warnings.join('\n')).to.match(/object 1 .*outside/);
  });

  it('multiple PrimSys partitions load, with a warning', async () => {
    const b = base();
    b.writeInt32LE(PartPrimSys, slotAt(0) + D.extra + 4);
    const img = await load(b);
    expect(findPrimaryPartitions(img).map((d) => d.id)).to.deep.equal([1, 2]);
    expect(img.warnings).to.deep.equal(['2 primary system partitions (objects 1, 2); at most one is allowed']);
  });

  it('warns when the header arch differs from the primary partition arch', async () => {
    const b = base();
    b.write('02\0', H.arch, 'latin1');
    const img = await load(b);
    expect(img.header.arch).to.equal('amd64');
    expect(img.warnings).to.deep.equal([`header architecture "02\\0" differs from primary partition 2's architecture "01\\0"`]);
  });

  it('unknown data type, fs, partition type, arch and SBOM format decode as unknown', async () => {
    const b = base();
    b.writeInt32LE(0x5000, slotAt(0) + D.dataType);
    b.writeInt32LE(99, slotAt(1) + D.extra);
    b.writeInt32LE(-7, slotAt(1) + D.extra + 4);
    b.write('99\0', slotAt(1) + D.extra + 8, 'latin1');
    b.write('14\0', H.arch, 'latin1');
    const img = await load(b);
    const [d1, d2] = img.descriptors as [SifDescriptor, SifDescriptor];
    expect(d1.dataType).to.equal(0x5000);
    expect(d1.dataTypeName).to.equal('Unknown');
    expect(d1.partition).to.equal(undefined);
    expect(d2.partition).to.deep.equal({ fsType: 99, fsTypeName: 'Unknown', partType: -7, partTypeName: 'Unknown', arch: 'unknown', archCode: '99' });
    expect(img.header.arch).to.equal('unknown');
    expect(img.header.archCode).to.equal('14');

    const sb = readFixture('one-object-sbom.sif');
    sb.writeInt32LE(42, slotAt(0) + D.extra);
    expect((await load(sb)).descriptors[0]!.sbom).to.deep.equal({ format: 42, formatName: 'unknown' });
    // gocryptfs (apptainer fork only) is known.
    expect(fsTypeName(6)).to.equal('Gocryptfs squashfs');
    expect([dataTypeName(0), partTypeName(0), sbomFormatName(0)]).to.deep.equal(['Unknown', 'Unknown', 'unknown']);
  });

  it('arch codes map both ways, and need the NUL', () => {
    expect(archNameFromBytes(Buffer.from('13\0'))).to.equal('loong64');
    expect(archNameFromBytes(Buffer.from('02 '))).to.equal('unknown');
    expect(archNameFromBytes(Buffer.from('00\0'))).to.equal('unknown');
    expect(archBytesFromName('riscv64')?.toString('latin1')).to.equal('12\0');
    expect(archBytesFromName('unknown')).to.equal(undefined);
    expect(archBytesFromName('toString')).to.equal(undefined);
  });

  it('a name exactly 128 bytes long, and a name with an embedded NUL', async () => {
    const b = base();
    b.fill(0x61, slotAt(0) + D.name, slotAt(0) + D.name + 128);
    Buffer.from('ab\0cd\0\0').copy(b, slotAt(1) + D.name);
    const [d1, d2] = (await load(b)).descriptors as [SifDescriptor, SifDescriptor];
    expect(d1.name).to.equal('a'.repeat(128));
    expect(d2.name).to.equal('ab\0cd');
    expect(d2.nameBytes.subarray(0, 5).toString('latin1')).to.equal('ab\0cd');
  });

  it('Go zero time is null, 0 is a real time, negative times are kept', async () => {
    const b = base();
    setI64(b, H.createdAt, 0);
    setI64(b, H.modifiedAt, GO_ZERO_TIME);
    setI64(b, slotAt(0) + D.createdAt, -1);
    setI64(b, slotAt(0) + D.modifiedAt, 0);
    const img = await load(b);
    expect([img.header.createdAt, img.header.modifiedAt]).to.deep.equal([0, null]);
    expect([img.descriptors[0]!.createdAt, img.descriptors[0]!.modifiedAt]).to.deep.equal([-1, 0]);
    expect(img.descriptors[1]!.createdAt).to.equal(null);
  });

  it('int64 above 2^53 in informational fields (times, uid) loads with a warning; in sizes it is an error', async () => {
    const b = base();
    setI64(b, slotAt(0) + D.uid, 2n ** 60n);
    setI64(b, H.createdAt, 2n ** 62n);
    const img = await load(b);
    expect(img.warnings.join('\n')).to.match(/object 1 uid 1152921504606846976 is beyond ±2\^53/);
    expect(img.warnings.join('\n')).to.match(/header createdAt 4611686018427387904 is beyond ±2\^53/);
    expect(img.descriptors[0]!.raw.readBigInt64LE(D.uid)).to.equal(2n ** 60n);
    await expectCode(load(setI64(base(), slotAt(0) + D.size, 2n ** 53n + 1n)), 'ERR_SIF_INVALID');
  });

  it('group and link mask decoding', async () => {
    const b = base();
    b.writeUInt32LE(0xf0000005, slotAt(0) + D.groupId);
    b.writeUInt32LE(0xf0000000, slotAt(1) + D.groupId);
    b.writeUInt32LE(0xf0000003, slotAt(0) + D.linkedId);
    b.writeUInt32LE(0x00000007, slotAt(1) + D.linkedId);
    const [d1, d2] = (await load(b)).descriptors as [SifDescriptor, SifDescriptor];
    expect([d1.groupId, d1.groupIdRaw, d2.groupId, d2.groupIdRaw]).to.deep.equal([5, 0xf0000005, 0, 0xf0000000]);
    expect(d1.link).to.deep.equal({ type: 'group', id: 3 });
    expect(d2.link).to.deep.equal({ type: 'object', id: 7 });
    expect(d1.linkedIdRaw).to.equal(0xf0000003);
    const plain = (await load(base())).descriptors[0]!;
    expect(plain.link).to.equal(null);
    expect(plain.groupId).to.equal(1);
  });

  it('relative IDs are keyed by the raw group value', async () => {
    const m = new MemoryTarget();
    const face = Buffer.from([0xfa, 0xce]);
    await createSif(m, {
      deterministic: true,
      objects: [
        { dataType: DataGeneric, data: face, group: 2 },
        { dataType: DataGeneric, data: face },
        { dataType: DataGeneric, data: face, group: 2 },
        { dataType: DataGeneric, data: face, group: null },
        { dataType: DataGeneric, data: face },
        { dataType: DataGeneric, data: face, group: null },
      ],
    });
    const img = await loadSif(m.source());
    expect(img.descriptors.map((d) => relativeId(img, d))).to.deep.equal([0, 0, 2, 0, 3, 2]);
  });

  it('zero-capacity images and zero-size objects load', async () => {
    const empty = fs.readFileSync(path.join(sifFixturesDir, 'golden/pkg/sif/testdata/TestAddObject/ErrInsufficientCapacity.golden'));
    const img = await load(empty);
    expect(img.header.descriptorsTotal).to.equal(0);
    expect(img.descriptors).to.deep.equal([]);
    const b = base();
    setI64(b, slotAt(1) + D.size, 0);
    expect((await load(b)).descriptors[1]!.size).to.equal(0);
  });

  it('exposes the header and descriptor raw bytes and the decoded extras of each type', async () => {
    const img = await load(readFixture('one-group-signed-pgp.sif'));
    expect(img.header.raw).to.have.length(HEADER_SIZE);
    expect(img.descriptors.every((d) => d.raw.length === DESCRIPTOR_SIZE && d.extra.length === 384 && d.nameBytes.length === 128)).to.equal(true);
    expect(img.descriptors[2]!.signature).to.deep.equal({ hashType: 1, hashTypeName: 'SHA-256', fingerprint: '12045C8C0B1004D058DE4BEDA20C27EE7FF7BA84' });
    expect(img.descriptors[0]!.partition?.partType).to.equal(PartSystem);
    expect(img.descriptors[0]!.dataType).to.equal(DataPartition);
    const sb = await load(readFixture('one-object-sbom.sif'));
    expect(sb.descriptors[0]!.dataType).to.equal(DataSBOM);
  });
});
