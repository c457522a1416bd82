// Shared by the sif-*.test.ts files: fixture lists and a reader for the independent parser's
// dump (shared/fixtures/sif/parser-output*.txt), which the tests compare loadSif against.
import { expect } from 'chai';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ImgmountError } from '../../../lib/errors';
import { sifFixturesDir } from '../../support/paths';

/** The 23 real images, relative to sifFixturesDir. */
export const fixtureImages: string[] = [
  ...fs
    .readdirSync(sifFixturesDir)
    .filter((f) => f.endsWith('.sif'))
    .sort(),
  'apptainer/busybox_amd64.sif',
  'apptainer/busybox_arm64.sif',
];

export function readFixture(rel: string): Buffer {
  return fs.readFileSync(path.join(sifFixturesDir, rel));
}

export interface DumpTime {
  unset: boolean;
  value: number;
}

export interface DumpSlot {
  slot: number;
  id: number;
  type: number;
  typeName: string;
  used: number;
  group: number | null; // null = NONE
  groupRaw: number;
  link: { type: 'object' | 'group'; id: number } | null;
  linkRaw: number;
  offset: number;
  size: number;
  sizeWithPadding: number;
  created: DumpTime;
  modified: DumpTime;
  uid: number;
  gid: number;
  name: Buffer;
  partition?: { fsType: number; fsTypeName: string; partType: number; partTypeName: string; arch: Buffer; archName: string; tailZero: boolean };
  signature?: { hashType: number; hashTypeName: string; fingerprint: string | null; tailZero: boolean };
  crypto?: { format: number; formatName: string; message: number; messageName: string };
  sbom?: { format: number; formatName: string };
  ociDigest?: string;
  /** The dump's "data sha256 matches descriptor digest" verdict (OCI objects). */
  ociDigestMatches?: boolean;
  dataSha256Prefix: string;
}

export interface DumpImage {
  file: string;
  size: number;
  sha256: string;
  launch: Buffer;
  magic: Buffer;
  version: Buffer;
  arch: Buffer;
  archName: string;
  id: string;
  created: DumpTime;
  modified: DumpTime;
  free: number;
  total: number;
  descOffset: number;
  descSize: number;
  dataOffset: number;
  dataSize: number;
  slots: DumpSlot[];
  valid: boolean;
}

/** Decodes a Python bytes/str repr body ('...' contents) into bytes. */
export function pyUnescape(s: string): Buffer {
  const out: number[] = [];
  for (let i = 0; i < s.length; i++) {
    const c = s[i]!;
    if (c !== '\\') {
      out.push(...Buffer.from(c, 'utf8'));
      continue;
    }
    const n = s[++i]!;
    if (n === 'x') {
      out.push(parseInt(s.slice(i + 1, i + 3), 16));
      i += 2;
    } else out.push(({ n: 10, r: 13, t: 9, '0': 0, '\\': 92, "'": 39, '"': 34 } as Record<string, number>)[n] ?? n.charCodeAt(0));
  }
  return Buffer.from(out);
}

function time(s: string): DumpTime {
  const m = /^unset\(go-zero:(-?\d+)\)$/.exec(s);
  if (m) return { unset: true, value: Number(m[1]) };
  const t = /^(-?\d+)\(/.exec(s);
  if (!t) throw new Error(`bad time ${s}`);
  return { unset: false, value: Number(t[1]) };
}

function must(re: RegExp, line: string | undefined): RegExpExecArray {
  const m = line === undefined ? null : re.exec(line);
  if (!m) throw new Error(`parser dump: ${re} did not match ${JSON.stringify(line)}`);
  return m;
}

/** Parses a parser-output*.txt dump into one record per file. */
export function parseDump(text: string): DumpImage[] {
  const blocks = text.split(/\n(?=file=)/).filter((b) => b.startsWith('file='));
  return blocks.map((block) => {
    const lines = block.split('\n');
    let li = 0;
    const next = () => lines[li++];
    const f = must(/^file=(\S+) size=(\d+) sha256=([0-9a-f]{64})$/, next());
    const launch = must(/^ {2}launch='(.*)'$/, next());
    const hdr = must(/^ {2}magic=b'(.*)' version=b'(.*)' arch=b'(.*)'\((\S+)\) id=(\S+)$/, next());
    const times = must(/^ {2}created=(unset\(go-zero:-?\d+\)|-?\d+\(\S+ \S+ UTC\)) modified=(unset\(go-zero:-?\d+\)|-?\d+\(\S+ \S+ UTC\))$/, next());
    const counts = must(/^ {2}descr free=(\d+) total=(\d+) offset=(\d+) size=(\d+) {2}data offset=(\d+) size=(\d+)$/, next());
    const img: DumpImage = {
      file: f[1]!,
      size: Number(f[2]),
      sha256: f[3]!,
      launch: pyUnescape(launch[1]!),
      magic: pyUnescape(hdr[1]!),
      version: pyUnescape(hdr[2]!),
      arch: pyUnescape(hdr[3]!),
      archName: hdr[4]!,
      id: hdr[5]!,
      created: time(times[1]!),
      modified: time(times[2]!),
      free: Number(counts[1]),
      total: Number(counts[2]),
      descOffset: Number(counts[3]),
      descSize: Number(counts[4]),
      dataOffset: Number(counts[5]),
      dataSize: Number(counts[6]),
      slots: [],
      valid: /\n {2}VALID\b/.test(block),
    };
    let cur: DumpSlot | undefined;
    for (; li < lines.length; li++) {
      const line = lines[li]!;
      let m: RegExpExecArray | null;
      if ((m = /^ {2}\[slot (\d+)\] id=(\d+) type=0x([0-9a-f]+)\((.*)\) used=(\d+) group=(NONE|\d+)\(raw=0x([0-9a-f]+)\) link=(NONE|\d+|\d+\(G\))\(raw=0x([0-9a-f]+)\)$/.exec(line))) {
        const lk = m[8]!;
        cur = {
          slot: Number(m[1]),
          id: Number(m[2]),
          type: parseInt(m[3]!, 16),
          typeName: m[4]!,
          used: Number(m[5]),
          group: m[6] === 'NONE' ? null : Number(m[6]),
          groupRaw: parseInt(m[7]!, 16),
          link: lk === 'NONE' ? null : lk.endsWith('(G)') ? { type: 'group', id: parseInt(lk, 10) } : { type: 'object', id: Number(lk) },
          linkRaw: parseInt(m[9]!, 16),
          offset: 0,
          size: 0,
          sizeWithPadding: 0,
          created: { unset: true, value: 0 },
          modified: { unset: true, value: 0 },
          uid: 0,
          gid: 0,
          name: Buffer.alloc(0),
          dataSha256Prefix: '',
        };
        img.slots.push(cur);
        const pos = must(/^ {6}offset=(\d+) size=(\d+) sizeWithPadding=(\d+) end=(\d+) pad_before=(-?\d+)$/, lines[++li]);
        cur.offset = Number(pos[1]);
        cur.size = Number(pos[2]);
        cur.sizeWithPadding = Number(pos[3]);
        const meta = must(/^ {6}created=(unset\(go-zero:-?\d+\)|-?\d+\(\S+ \S+ UTC\)) modified=(unset\(go-zero:-?\d+\)|-?\d+\(\S+ \S+ UTC\)) uid=(\d+) gid=(\d+) name='(.*)'$/, lines[++li]);
        cur.created = time(meta[1]!);
        cur.modified = time(meta[2]!);
        cur.uid = Number(meta[3]);
        cur.gid = Number(meta[4]);
        cur.name = pyUnescape(meta[5]!);
      } else if (cur && (m = /^ {6}partition: fstype=(-?\d+)\((.*)\) parttype=(-?\d+)\((.*)\) arch=b'(.*)'\((\S+)\) extra_tail_zero=(True|False)$/.exec(line))) {
        cur.partition = {
          fsType: Number(m[1]),
          fsTypeName: m[2]!,
          partType: Number(m[3]),
          partTypeName: m[4]!,
          arch: pyUnescape(m[5]!),
          archName: m[6]!,
          tailZero: m[7] === 'True',
        };
      } else if (cur && (m = /^ {6}signature: hashtype=(-?\d+)\((.*)\) entity_fp=(\(none\)|[0-9A-F]{40}) extra_tail_zero=(True|False)$/.exec(line))) {
        cur.signature = {
          hashType: Number(m[1]),
          hashTypeName: m[2]!,
          fingerprint: m[3] === '(none)' ? null : m[3]!,
          tailZero: m[4] === 'True',
        };
      } else if (cur && (m = /^ {6}crypto message: format=(-?\d+)\((.*)\) message=0x([0-9a-f]+)\((.*)\)$/.exec(line))) {
        cur.crypto = { format: Number(m[1]), formatName: m[2]!, message: parseInt(m[3]!, 16), messageName: m[4]! };
      } else if (cur && (m = /^ {6}sbom: format=(-?\d+)\((.*)\)$/.exec(line))) {
        cur.sbom = { format: Number(m[1]), formatName: m[2]! };
      } else if (cur && (m = /^ {6}oci digest text='(.*)'$/.exec(line))) {
        cur.ociDigest = m[1]!;
      } else if (cur && (m = /^ {6}data sha256 matches descriptor digest: (True|False)$/.exec(line))) {
        cur.ociDigestMatches = m[1] === 'True';
      } else if (cur && (m = /^ {6}data sha256=([0-9a-f]+)\.\.\. /.exec(line))) {
        cur.dataSha256Prefix = m[1]!;
      }
    }
    return img;
  });
}

/** Asserts that `p` rejects with an ImgmountError (or Node-style arg error) with `code`. */
export async function expectCode(p: Promise<unknown>, code: string, message?: RegExp): Promise<Error & { code: string; details?: Record<string, unknown> }> {
  let err: unknown;
  try {
    await p;
  } catch (e) {
    err = e;
  }
  expect(err, `expected rejection with ${code}`).to.be.instanceOf(Error);
  const e = err as Error & { code: string; details?: Record<string, unknown> };
  expect(e.code, e.message).to.equal(code);
  if (code.startsWith('ERR_SIF')) expect(e).to.be.instanceOf(ImgmountError);
  if (message) expect(e.message).to.match(message);
  return e;
}
