// Integrity streams: the Go goldens (one-field mutations), and the digests recomputed from the
// signed fixtures compared with the metadata their signatures carry.
import { expect } from 'chai';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { bufferSource } from '../../../lib/io/byte-source';
import {
  DataDeffile,
  DataEnvVar,
  GROUP_MASK,
  MAGIC,
  VERSION_01,
  descriptorData,
  descriptorIntegrityBytes,
  headerIntegrityBytes,
  loadSif,
  relativeId,
} from '../../../lib/sif';
import type { SifImage } from '../../../lib/sif';
import { emptyRawDescriptor, encodeRawDescriptor, encodeRawHeader } from '../../../lib/sif/codec';
import type { RawDescriptor, RawHeader } from '../../../lib/sif/codec';
import { sifGoldenDir } from '../../support/paths';
import { readFixture } from './helpers';

const digest = (algo: string, b: Uint8Array) => createHash(algo).update(b).digest('hex');
const golden = (dir: string, name: string) => fs.readFileSync(path.join(sifGoldenDir, dir, `${name}.golden`));

describe('sif: header integrity stream (TestHeader_GetIntegrityReader goldens)', () => {
  const base = (): RawHeader => {
    const launch = Buffer.alloc(32);
    launch.write('#!/usr/bin/env run-singularity\n', 'latin1');
    return {
      launchScript: launch,
      magic: Buffer.from(MAGIC),
      version: Buffer.from(VERSION_01),
      arch: Buffer.from('02\0', 'latin1'),
      uuid: Buffer.from('b2659d4ebd504ea5bd17eec5e54f918e', 'hex'),
      createdAt: 1504657553n,
      modifiedAt: 1504657653n,
      descriptorsFree: 0n,
      descriptorsTotal: 0n,
      descriptorsOffset: 0n,
      descriptorsSize: 0n,
      dataOffset: 0n,
      dataSize: 0n,
    };
  };
  // Same one-field changes as the Go test; copy() over a field leaves its tail as it was.
  const cases: Array<[string, (h: RawHeader) => void]> = [
    ['LaunchScript', (h) => h.launchScript.write('#!/usr/bin/env rm\n', 'latin1')],
    ['Magic', (h) => h.magic.write('BAD_MAGIC', 'latin1')],
    ['Version', (h) => h.version.write('02', 'latin1')],
    ['Arch', (h) => h.arch.write('11\0', 'latin1')],
    ['ID', (h) => void (h.uuid[0] = h.uuid[0]! + 1)],
    ['CreatedAt', (h) => void h.createdAt++],
    ['ModifiedAt', (h) => void h.modifiedAt++],
    ['DescriptorsFree', (h) => void h.descriptorsFree++],
    ['DescriptorsTotal', (h) => void h.descriptorsTotal++],
    ['DescriptorsOffset', (h) => void h.descriptorsOffset++],
    ['DescriptorsSize', (h) => void h.descriptorsSize++],
    ['DataOffset', (h) => void h.dataOffset++],
    ['DataSize', (h) => void h.dataSize++],
  ];
  it('covers every golden in the directory', () => {
    const files = fs.readdirSync(path.join(sifGoldenDir, 'TestHeader_GetIntegrityReader')).map((f) => f.replace(/\.golden$/, ''));
    expect(files.sort()).to.deep.equal(cases.map(([n]) => n).sort());
  });
  for (const [name, mod] of cases) {
    it(`${name}`, () => {
      const h = base();
      mod(h);
      const got = headerIntegrityBytes(encodeRawHeader(h));
      expect(got).to.have.length(61);
      expect(got.equals(golden('TestHeader_GetIntegrityReader', name))).to.equal(true);
    });
  }
  it('accepts a decoded header as well as raw bytes', async () => {
    const img = await loadSif(bufferSource(readFixture('one-group.sif')));
    expect(headerIntegrityBytes(img.header).equals(headerIntegrityBytes(img.header.raw))).to.equal(true);
    expect(() => headerIntegrityBytes(Buffer.alloc(127))).to.throw(TypeError);
  });
});

describe('sif: descriptor integrity stream (TestDescriptor_GetIntegrityReader goldens)', () => {
  const base = (): RawDescriptor => {
    const d = emptyRawDescriptor();
    d.dataType = DataDeffile;
    d.used = true;
    d.id = 1;
    d.groupId = (GROUP_MASK | 1) >>> 0;
    d.createdAt = 1504657553n;
    d.modifiedAt = 1504657553n;
    d.name.write('GOOD_NAME', 'latin1');
    d.extra.write('GOOD_EXTRA', 'latin1');
    return d;
  };
  const cases: Array<[string, (d: RawDescriptor) => void, number?]> = [
    ['DataType', (d) => void (d.dataType = DataEnvVar)],
    ['Used', (d) => void (d.used = !d.used)],
    ['ID', (d) => void d.id++],
    ['RelativeID', () => undefined, 1],
    ['GroupID', (d) => void d.groupId++],
    ['LinkedID', (d) => void d.linkedId++],
    ['Offset', (d) => void d.offset++],
    ['Size', (d) => void d.size++],
    ['SizeWithPadding', (d) => void d.sizeWithPadding++],
    ['CreatedAt', (d) => void d.createdAt++],
    ['ModifiedAt', (d) => void d.modifiedAt++],
    ['UID', (d) => void d.uid++],
    ['GID', (d) => void d.gid++],
    ['Name', (d) => void d.name.write('BAD_NAME', 'latin1')],
    ['Extra', (d) => void d.extra.write('BAD_EXTRA', 'latin1')],
  ];
  it('covers every golden in the directory', () => {
    const files = fs.readdirSync(path.join(sifGoldenDir, 'TestDescriptor_GetIntegrityReader')).map((f) => f.replace(/\.golden$/, ''));
    expect(files.sort()).to.deep.equal(cases.map(([n]) => n).sort());
  });
  for (const [name, mod, rel] of cases) {
    it(`${name}`, () => {
      const d = base();
      mod(d);
      const got = descriptorIntegrityBytes(encodeRawDescriptor(d), rel ?? 0);
      expect(got).to.have.length(557);
      expect(got.equals(golden('TestDescriptor_GetIntegrityReader', name))).to.equal(true);
    });
  }
  it('rejects a bad relative ID or raw size', () => {
    expect(() => descriptorIntegrityBytes(Buffer.alloc(585), -1)).to.throw(TypeError);
    expect(() => descriptorIntegrityBytes(Buffer.alloc(584), 0)).to.throw(TypeError);
  });
});

interface SignedMetadata {
  version: number;
  header: { digest: string };
  objects: Array<{ relativeId: number; descriptorDigest: string; objectDigest: string }>;
}

/** The metadata JSON a signature object carries: PGP clearsigned text or a DSSE envelope. */
function signedMetadata(sig: Buffer): SignedMetadata {
  const text = sig.toString('utf8');
  if (text.startsWith('-----BEGIN PGP SIGNED MESSAGE-----')) {
    const m = /^-----BEGIN PGP SIGNED MESSAGE-----\n(?:[^\n]+\n)*\n([\s\S]*?)\n-----BEGIN PGP SIGNATURE-----/.exec(text);
    expect(m, 'clearsigned body').to.not.equal(null);
    return JSON.parse(m![1]!.replace(/^- /gm, '')) as SignedMetadata;
  }
  const env = JSON.parse(text) as { payloadType: string; payload: string };
  expect(env.payloadType).to.equal('application/vnd.sylabs.sif-metadata+json');
  return JSON.parse(Buffer.from(env.payload, 'base64').toString('utf8')) as SignedMetadata;
}

describe('sif: recomputed digests match the metadata signed inside the fixtures', () => {
  // Signature objects per image, from the README table: one per signed group.
  const signatures: Record<string, number[]> = {
    'one-group-signed-pgp.sif': [3],
    'one-group-signed-dsse.sif': [3],
    'two-groups-signed-pgp.sif': [4, 5],
    'two-groups-signed-dsse.sif': [4, 5],
  };
  for (const [file, sigIds] of Object.entries(signatures)) {
    it(`${file}: header, descriptor and object sha256 of every signed group`, async () => {
      const buf = readFixture(file);
      const src = bufferSource(buf);
      const img: SifImage = await loadSif(src);
      const sigs = img.descriptors.filter((d) => d.signature);
      expect(sigs.map((d) => d.id)).to.deep.equal(sigIds);
      let checked = 0;
      for (const sig of sigs) {
        expect(sig.groupId, 'signature is in no group').to.equal(0);
        expect(sig.link?.type).to.equal('group');
        const md = signedMetadata(await descriptorData(src, sig));
        expect(md.version).to.equal(1);
        expect(md.header.digest).to.equal('sha256:' + digest('sha256', headerIntegrityBytes(img.header)));
        const members = img.descriptors.filter((d) => d.groupId === sig.link!.id);
        expect(md.objects.map((o) => o.relativeId)).to.deep.equal(members.map((d) => relativeId(img, d)));
        for (const [i, d] of members.entries()) {
          const o = md.objects[i]!;
          expect(o.descriptorDigest, `object ${d.id} descriptor`).to.equal('sha256:' + digest('sha256', descriptorIntegrityBytes(d, relativeId(img, d))));
          expect(o.objectDigest, `object ${d.id} data`).to.equal('sha256:' + digest('sha256', await descriptorData(src, d)));
          checked++;
        }
      }
      expect(checked).to.equal(img.descriptors.length - sigs.length);
    });
  }

  it('the known header digest of the deterministic 386 images (635fa0a1…) and object 1 (3634ad01…)', async () => {
    const img = await loadSif(bufferSource(readFixture('one-group.sif')));
    expect(digest('sha256', headerIntegrityBytes(img.header))).to.match(/^635fa0a1/);
    expect(digest('sha256', descriptorIntegrityBytes(img.descriptors[0]!, 0))).to.match(/^3634ad01/);
    expect(digest('sha256', descriptorIntegrityBytes(img.descriptors[1]!, 1))).to.match(/^04b5f87c/);
  });

  // Legacy (Singularity < 3.6) signatures: clearsigned "SIFHASH:\n<hex>" over object data.
  // Signature objects and what they link to, from the README table.
  const legacy: Record<string, string[]> = {
    'one-group-signed-legacy.sif': ['3->object 2'],
    'one-group-signed-legacy-group.sif': ['3->group 1'],
    'one-group-signed-legacy-all.sif': ['3->object 1', '4->object 2'],
    'two-groups-signed-legacy.sif': ['4->object 2'],
    'two-groups-signed-legacy-group.sif': ['4->group 1'],
    'two-groups-signed-legacy-all.sif': ['4->object 1', '5->object 2'],
  };
  for (const [file, links] of Object.entries(legacy)) {
    it(`${file}: legacy SIFHASH (SHA-384) digests match`, async () => {
      const src = bufferSource(readFixture(file));
      const img = await loadSif(src);
      const sigs = img.descriptors.filter((d) => d.signature);
      expect(sigs.map((d) => `${d.id}->${d.link?.type} ${d.link?.id}`)).to.deep.equal(links);
      for (const sig of sigs) {
        expect(sig.signature!.hashTypeName).to.equal('SHA-384');
        const text = (await descriptorData(src, sig)).toString('utf8');
        const want = /\nSIFHASH:\n([0-9a-f]+)\n/.exec(text)![1];
        const covered =
          sig.link!.type === 'object'
            ? img.descriptors.filter((d) => d.id === sig.link!.id)
            : img.descriptors.filter((d) => d.groupId === sig.link!.id && !d.signature);
        const data = Buffer.concat(await Promise.all(covered.map((d) => descriptorData(src, d))));
        expect(digest('sha384', data)).to.equal(want);
      }
    });
  }
});
