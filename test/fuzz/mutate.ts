// Mutations of real images for the fuzzer (test/fuzz/harness.ts): where an image's structures
// are (its layout), what can be done to them, and applying a list of mutations to a copy.
//
// A mutation is plain data resolved against the pristine image's layout when it is applied
// ("the 3rd used descriptor's size field := file size + 1"), so fast-check can generate and
// shrink the same list for any base, and a counterexample prints as JSON that says what was
// done. The mutated image is `{ data, size }`: `size` may exceed `data.length` (a sparse tail
// of zeros), which is how huge files are made without allocating them.
import fc from 'fast-check';
import { NotThisFormat } from '../../lib/image/probe';
import { parseLaunchHeader } from '../../lib/image/launch-header';
import { bufferSource } from '../../lib/io/byte-source';
import { DESCRIPTOR_SIZE, DataPartition, FsExt3, FsSquash, HEADER_SIZE, MAGIC, MAX_DESCRIPTORS, loadSif } from '../../lib/sif';
import { D, H } from '../../lib/sif/codec';

/** A mutated image: `data`, then zeros up to `size` (size >= data.length). */
export interface Img {
  data: Buffer;
  size: number;
}

/** Where the structures of a pristine image are. */
export interface Layout {
  /** Launch header length (0 without one). */
  launch: number;
  /** SIF header and descriptor table (by magic; the table clamped to the file and the cap). */
  sif?: { descOff: number; total: number; usedSlots: number[] };
  /** Objects of a SIF that loads: offset and size (partitions and sections). */
  objects: Array<{ offset: number; size: number }>;
  /** Offsets of squashfs superblocks (bare image after its launch header, SIF partitions). */
  squashfs: number[];
  /** Offsets of ext superblocks (filesystem start + 1024). */
  ext: number[];
  /** Filesystem start -> bytes its container holds from there (partition size, or to the end of the file). */
  room: Map<number, number>;
  /** Byte ranges [start, end) where the structures live, for concentrated flips. */
  hot: Array<[number, number]>;
  /** Sizes where a truncation changes what a reader sees. */
  boundaries: number[];
}

const SQUASHFS_MAGIC = 0x73717368;
const SQUASHFS_MAGIC_BE = 0x68737173;
const EXT_MAGIC = 0xef53;

/** The layout of a pristine image (never throws: what cannot be parsed is simply absent). */
export async function layoutOf(b: Buffer): Promise<Layout> {
  const header = parseLaunchHeader(b.subarray(0, 4096));
  const launch = header?.length ?? 0;
  const layout: Layout = { launch, objects: [], squashfs: [], ext: [], room: new Map(), hot: [[0, Math.min(b.length, 4096)]], boundaries: [] };
  const isSquash = (o: number) => o + 4 <= b.length && [SQUASHFS_MAGIC, SQUASHFS_MAGIC_BE].includes(b.readUInt32LE(o));
  const isExt = (o: number) => o + 0x3a <= b.length && b.readUInt16LE(o + 0x38) === EXT_MAGIC;
  if (b.length >= HEADER_SIZE && b.subarray(H.magic, H.magic + MAGIC.length).equals(MAGIC)) {
    const descOff = Number(b.readBigInt64LE(H.descriptorsOffset));
    const claimed = Number(b.readBigInt64LE(H.descriptorsTotal));
    const fits = descOff >= 0 && descOff < b.length ? Math.floor((b.length - descOff) / DESCRIPTOR_SIZE) : 0;
    const total = Math.max(0, Math.min(claimed, MAX_DESCRIPTORS, fits));
    const usedSlots: number[] = [];
    for (let s = 0; s < total; s++) if (b[descOff + s * DESCRIPTOR_SIZE + D.used] !== 0) usedSlots.push(s);
    layout.sif = { descOff, total, usedSlots };
    layout.hot.push([0, HEADER_SIZE], [descOff, descOff + Math.max(1, Math.min(total, 64)) * DESCRIPTOR_SIZE]);
    layout.boundaries.push(descOff, descOff + total * DESCRIPTOR_SIZE);
    try {
      const sif = await loadSif(bufferSource(b));
      for (const d of sif.descriptors) {
        layout.objects.push({ offset: d.offset, size: d.size });
        layout.boundaries.push(d.offset, d.offset + 1, d.offset + d.size - 1, d.offset + d.size);
        if (d.dataType !== DataPartition) continue;
        layout.hot.push([d.offset, d.offset + Math.min(d.size, 2048)]);
        layout.room.set(d.offset, d.size);
        if (d.partition?.fsType === FsSquash || isSquash(d.offset)) layout.squashfs.push(d.offset);
        if (d.partition?.fsType === FsExt3 || isExt(d.offset + 1024)) layout.ext.push(d.offset + 1024);
      }
    } catch {
      // A broken SIF fixture (truncated, bad version): its header and table are still there to mutate.
    }
  } else {
    if (isSquash(launch)) layout.squashfs.push(launch);
    if (isExt(launch + 1024)) layout.ext.push(launch + 1024);
    layout.room.set(launch, b.length - launch);
  }
  for (const o of layout.squashfs) {
    layout.hot.push([o, o + 96]);
    layout.boundaries.push(o + 4, o + 95, o + 96);
  }
  for (const o of layout.ext) {
    layout.hot.push([o, o + 0x154]);
    layout.boundaries.push(o + 0x39, o + 0x3a, o + 0x153, o + 0x154);
  }
  layout.boundaries.push(0, 1, 2, 31, 32, 42, 48, 127, 128, 2047, 2048, 4095, 4096, b.length - 1, b.length);
  layout.hot = layout.hot.map(([s, e]): [number, number] => [Math.max(0, s), Math.min(b.length, e)]).filter(([s, e]) => e > s);
  layout.boundaries = [...new Set(layout.boundaries.filter((n) => n >= 0 && n <= b.length))].sort((x, y) => x - y);
  return layout;
}

// ---- fields ----

/** A field: offset in its structure, width in bytes, and values worth trying besides random ones. */
interface Field {
  name: string;
  at: number;
  width: number;
  /** Integer fields (width 1, 2, 4, 8); others are byte strings. */
  int: boolean;
  interesting: bigint[];
}

const big = (xs: Array<number | bigint>) => xs.map(BigInt);
const I64 = big([0, 1, -1, 128, 585, 4096, 585 * 1024, 585 * 1025, 2 ** 31 - 1, 2 ** 31, 2 ** 32 - 1, 2 ** 32, 2 ** 53 - 1, 2n ** 53n, 2n ** 62n, 2n ** 63n - 1n, -(2n ** 63n)]);
const U32 = big([0, 1, 2, 0x7fffffff, 0x80000000, 0xffffffff]);
const f = (name: string, at: number, width: number, interesting: bigint[] = [], int = true): Field => ({ name, at, width, int, interesting });

export const sifHeaderFields: Field[] = [
  f('launchScript', H.launchScript, 32, [], false),
  f('magic', H.magic, 10, [], false),
  f('version', H.version, 3, big([0x003130, 0x003230, 0x000030, 0x313030]), false),
  f('arch', H.arch, 3, big([0x3230, 0x3430, 0x3030, 0x3331, 0x3939]), false),
  f('uuid', H.uuid, 16, [], false),
  f('createdAt', H.createdAt, 8, I64),
  f('modifiedAt', H.modifiedAt, 8, I64),
  f('descriptorsFree', H.descriptorsFree, 8, I64),
  f('descriptorsTotal', H.descriptorsTotal, 8, [...I64, 1023n, 1024n, 1025n, 2n ** 20n]),
  f('descriptorsOffset', H.descriptorsOffset, 8, I64),
  f('descriptorsSize', H.descriptorsSize, 8, [...I64, 584n, 586n]),
  f('dataOffset', H.dataOffset, 8, I64),
  f('dataSize', H.dataSize, 8, I64),
];

/** Partition extras: fsType, partType (int32) and the 3-byte arch at +8. */
const X = D.extra;
export const sifDescriptorFields: Field[] = [
  f('dataType', D.dataType, 4, big([0, 0x4001, 0x4004, 0x4005, 0x4007, 0x400b, 0x400c, -1, 0x7fffffff])),
  f('used', D.used, 1, big([0, 1, 2, 255])),
  f('id', D.id, 4, U32),
  f('groupId', D.groupId, 4, big([0, 1, 2, 0xf0000000, 0xf0000001, 0xf0000002, 0xffffffff])),
  f('linkedId', D.linkedId, 4, big([0, 1, 2, 0xf0000001, 0xffffffff])),
  f('offset', D.offset, 8, I64),
  f('size', D.size, 8, [...I64, 96n, 2048n]),
  f('sizeWithPadding', D.sizeWithPadding, 8, I64),
  f('createdAt', D.createdAt, 8, I64),
  f('modifiedAt', D.modifiedAt, 8, I64),
  f('uid', D.uid, 8, I64),
  f('gid', D.gid, 8, I64),
  f('name', D.name, 128, [], false),
  f('extra', D.extra, 384, [], false),
  f('extra.fsType', X, 4, big([0, 1, 2, 3, 4, 5, 6, 7, -1])),
  f('extra.partType', X + 4, 4, big([0, 1, 2, 3, 4, 5, 6, -1])),
  f('extra.arch', X + 8, 3, big([0x3230, 0x3430, 0x3030, 0x3331, 0x3939, 0]), false),
];

export const squashfsFields: Field[] = [
  f('magic', 0, 4, big([SQUASHFS_MAGIC, SQUASHFS_MAGIC_BE, 0])),
  f('inodes', 4, 4, U32),
  f('mkfsTime', 8, 4, U32),
  f('blockSize', 12, 4, big([0, 4096, 8192, 131072, 1 << 20, 1 << 21, 4095, 0xffffffff])),
  f('fragments', 16, 4, U32),
  f('compression', 20, 2, big([0, 1, 2, 3, 4, 5, 6, 7, 0xffff])),
  f('blockLog', 22, 2, big([0, 11, 12, 13, 17, 20, 21, 31, 0xffff])),
  f('flags', 24, 2, big([0, 0xffff])),
  f('noIds', 26, 2, big([0, 1, 0xffff])),
  f('major', 28, 2, big([0, 1, 3, 4, 5, 0xffff])),
  f('minor', 30, 2, big([0, 1, 0xffff])),
  f('rootInode', 32, 8, I64),
  f('bytesUsed', 40, 8, I64),
  f('idTable', 48, 8, I64),
  f('xattrTable', 56, 8, I64),
  f('inodeTable', 64, 8, I64),
  f('dirTable', 72, 8, I64),
  f('fragTable', 80, 8, I64),
  f('exportTable', 88, 8, I64),
];

/** Bits of the ext feature words, one at a time and together. */
const EXT_FEATURES = big([0, 0x1, 0x2, 0x4, 0x8, 0x10, 0x40, 0x80, 0x100, 0x200, 0x400, 0x1000, 0x2000, 0x8000, 0x10000, 0x20000, 0x80000000, 0xffffffff]);
export const extFields: Field[] = [
  f('inodesCount', 0x0, 4, U32),
  f('blocksCount', 0x4, 4, big([0, 1, 512, 1024, 2048, 4096, 0x7fffffff, 0xffffffff])),
  f('firstDataBlock', 0x14, 4, U32),
  f('logBlockSize', 0x18, 4, big([0, 1, 2, 6, 7, 31, 32, 0xffffffff])),
  f('logClusterSize', 0x1c, 4, big([0, 1, 7, 0xffffffff])),
  f('blocksPerGroup', 0x20, 4, U32),
  f('magic', 0x38, 2, big([EXT_MAGIC, 0x53ef, 0])),
  f('state', 0x3a, 2, big([0, 1, 2, 4, 0xffff])),
  f('revLevel', 0x4c, 4, big([0, 1, 2, 0xffffffff])),
  f('featureCompat', 0x5c, 4, EXT_FEATURES),
  f('featureIncompat', 0x60, 4, EXT_FEATURES),
  f('featureRoCompat', 0x64, 4, EXT_FEATURES),
  f('uuid', 0x68, 16, [], false),
  f('volumeName', 0x78, 16, [], false),
  f('blocksCountHi', 0x150, 4, big([0, 1, 0x100, 0xffffffff])),
];

// ---- mutations ----

/** A new value for a field, resolved when it is applied. */
export type Value =
  | { v: 'pick'; i: number } // one of the field's interesting values
  | { v: 'delta'; d: number } // the pristine value + d
  | { v: 'bit'; bit: number } // the pristine value with one bit flipped
  | { v: 'size'; d: number } // the image's (logical) size + d
  | { v: 'room'; d: number } // what the filesystem's container holds (bytes; blocks for ext counts) + d
  | { v: 'rand'; seed: number }; // random bytes

export type Mutation =
  | { m: 'flip'; hot: boolean; pos: number; xor: number }
  | { m: 'splat'; hot: boolean; pos: number; len: number; seed: number }
  | { m: 'sifHeader'; field: number; value: Value }
  | { m: 'sifDesc'; used: boolean; slot: number; field: number; value: Value }
  | { m: 'squashfs'; which: number; field: number; value: Value }
  | { m: 'ext'; which: number; field: number; value: Value }
  | { m: 'sifTable'; total: number; free: 'all' | 'unused'; moveData: boolean; fit: boolean }
  | { m: 'sifObject'; slot: number; place: 'header' | 'table' | 'other' | 'eof' | 'zero' | 'huge'; d: number }
  | { m: 'truncate'; boundary: boolean; pick: number; delta: number }
  | { m: 'extend'; len: number; seed: number }
  | { m: 'sparse'; size: number }
  | { m: 'launch'; variant: 'lf' | 'crlf' | 'args' | 'long' | 'nonl' | 'strip'; len: number }
  | { m: 'transplant'; donor: number; which: number };

/** Sparse sizes: past 2 GiB, 4 GiB, 2^40 and the largest safe integer. */
export const SPARSE_SIZES = [2 ** 31 - 1, 2 ** 31 + 585, 2 ** 32 + 4096, 2 ** 40, 2 ** 44, 2 ** 53 - 1];

const value: fc.Arbitrary<Value> = fc.oneof(
  { weight: 4, arbitrary: fc.record({ v: fc.constant('pick' as const), i: fc.nat(64) }) },
  { weight: 2, arbitrary: fc.record({ v: fc.constant('delta' as const), d: fc.integer({ min: -70, max: 70 }) }) },
  { weight: 2, arbitrary: fc.record({ v: fc.constant('bit' as const), bit: fc.nat(63) }) },
  { weight: 2, arbitrary: fc.record({ v: fc.constant('size' as const), d: fc.integer({ min: -4200, max: 4200 }) }) },
  { weight: 2, arbitrary: fc.record({ v: fc.constant('room' as const), d: fc.integer({ min: -3, max: 3 }) }) },
  { weight: 1, arbitrary: fc.record({ v: fc.constant('rand' as const), seed: fc.nat() }) },
);

export const mutationArb: fc.Arbitrary<Mutation> = fc.oneof(
  { weight: 4, arbitrary: fc.record({ m: fc.constant('flip' as const), hot: fc.boolean(), pos: fc.nat(), xor: fc.integer({ min: 1, max: 255 }) }) },
  { weight: 1, arbitrary: fc.record({ m: fc.constant('splat' as const), hot: fc.boolean(), pos: fc.nat(), len: fc.integer({ min: 1, max: 64 }), seed: fc.nat() }) },
  { weight: 3, arbitrary: fc.record({ m: fc.constant('sifHeader' as const), field: fc.nat(sifHeaderFields.length - 1), value }) },
  { weight: 4, arbitrary: fc.record({ m: fc.constant('sifDesc' as const), used: fc.boolean(), slot: fc.nat(1100), field: fc.nat(sifDescriptorFields.length - 1), value }) },
  { weight: 3, arbitrary: fc.record({ m: fc.constant('squashfs' as const), which: fc.nat(8), field: fc.nat(squashfsFields.length - 1), value }) },
  { weight: 3, arbitrary: fc.record({ m: fc.constant('ext' as const), which: fc.nat(8), field: fc.nat(extFields.length - 1), value }) },
  {
    weight: 2,
    arbitrary: fc.record({
      m: fc.constant('sifTable' as const),
      total: fc.constantFrom(0, 1, 2, 47, 48, 49, 1023, 1024, 1025, 4096, 2 ** 20),
      free: fc.constantFrom('all' as const, 'unused' as const),
      moveData: fc.boolean(),
      fit: fc.boolean(),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      m: fc.constant('sifObject' as const),
      slot: fc.nat(64),
      place: fc.constantFrom('header' as const, 'table' as const, 'other' as const, 'eof' as const, 'zero' as const, 'huge' as const),
      d: fc.integer({ min: -2, max: 2 }),
    }),
  },
  { weight: 2, arbitrary: fc.record({ m: fc.constant('truncate' as const), boundary: fc.boolean(), pick: fc.nat(), delta: fc.integer({ min: -3, max: 3 }) }) },
  { weight: 1, arbitrary: fc.record({ m: fc.constant('extend' as const), len: fc.integer({ min: 1, max: 70000 }), seed: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ m: fc.constant('sparse' as const), size: fc.constantFrom(...SPARSE_SIZES) }) },
  {
    weight: 1,
    arbitrary: fc.record({ m: fc.constant('launch' as const), variant: fc.constantFrom('lf' as const, 'crlf' as const, 'args' as const, 'long' as const, 'nonl' as const, 'strip' as const), len: fc.nat(2100) }),
  },
  { weight: 1, arbitrary: fc.record({ m: fc.constant('transplant' as const), donor: fc.nat(), which: fc.nat(8) }) },
);

/** 1 to 6 mutations, usually few: one broken field is how most corruption looks. */
export const mutationsArb: fc.Arbitrary<Mutation[]> = fc.oneof(
  { weight: 3, arbitrary: fc.array(mutationArb, { minLength: 1, maxLength: 2 }) },
  { weight: 1, arbitrary: fc.array(mutationArb, { minLength: 1, maxLength: 6 }) },
);

/** Deterministic bytes from a seed (xorshift32): compact in a counterexample, reproducible. */
export function seededBytes(seed: number, len: number): Buffer {
  const b = Buffer.allocUnsafe(len);
  let x = (seed | 0) || 0x9e3779b9;
  for (let i = 0; i < len; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    b[i] = x & 0xff;
  }
  return b;
}

/** A donor for transplants: a superblock region of another image. */
export interface Donor {
  name: string;
  bytes: Buffer;
}

function readUInt(b: Buffer, at: number, width: number): bigint {
  let v = 0n;
  for (let i = width - 1; i >= 0; i--) v = (v << 8n) | BigInt(b[at + i]!);
  return v;
}

function writeUInt(b: Buffer, at: number, width: number, v: bigint): void {
  const mask = (1n << BigInt(width * 8)) - 1n;
  let x = v & mask; // two's complement for negative values
  for (let i = 0; i < width; i++) {
    b[at + i] = Number(x & 0xffn);
    x >>= 8n;
  }
}

/** Bytes (or, for an ext block count, blocks) the structure at `base` has room for: for the 'room' value. */
type Room = (field: Field) => number;

function setField(img: Img, base: number, field: Field, val: Value, room: Room = () => img.size - base): void {
  const at = base + field.at;
  if (at < 0 || at + field.width > img.data.length) return; // outside what the image holds
  const d = img.data;
  if (!field.int && val.v === 'rand') {
    seededBytes(val.seed, field.width).copy(d, at);
    return;
  }
  const width = Math.min(field.width, 8);
  const orig = readUInt(d, at, width);
  let next: bigint;
  switch (val.v) {
    case 'pick':
      next = field.interesting.length ? field.interesting[val.i % field.interesting.length]! : 0n;
      break;
    case 'delta':
      next = orig + BigInt(val.d);
      break;
    case 'bit':
      next = orig ^ (1n << BigInt(val.bit % (field.width * 8 > 64 ? 64 : field.width * 8)));
      break;
    case 'size':
      next = BigInt(img.size + val.d);
      break;
    case 'room':
      next = BigInt(room(field) + val.d);
      break;
    case 'rand': {
      next = readUInt(seededBytes(val.seed, width), 0, width);
      break;
    }
  }
  if (!field.int && field.width > 8 && val.v === 'pick') d.fill(0, at, at + field.width);
  writeUInt(d, at, width, next);
}

function pickHot(layout: Layout, img: Img, pos: number, hot: boolean): number {
  if (hot && layout.hot.length > 0) {
    const [s, e] = layout.hot[pos % layout.hot.length]!;
    return s + (Math.floor(pos / layout.hot.length) % (e - s));
  }
  return img.data.length === 0 ? 0 : pos % img.data.length;
}

const LAUNCH = '#!/usr/bin/env run-singularity';

function launchHeader(variant: Exclude<Extract<Mutation, { m: 'launch' }>['variant'], 'strip'>, len: number): Buffer {
  switch (variant) {
    case 'lf':
      return Buffer.from(LAUNCH + '\n', 'latin1');
    case 'crlf':
      return Buffer.from(LAUNCH + '\r\n', 'latin1');
    case 'args':
      return Buffer.from(LAUNCH + ' --x'.repeat(1 + (len % 500)) + '\n', 'latin1');
    case 'long': // a first line around the 2048-byte limit
      return Buffer.from('#!' + 'x'.repeat(2030 + (len % 40)) + '\n', 'latin1');
    case 'nonl':
      return Buffer.from('#!' + 'y'.repeat(len), 'latin1');
  }
}

/** Applies `muts` to a copy of `base`. Mutations that do not fit the image are no-ops. */
export function applyMutations(base: Buffer, layout: Layout, muts: readonly Mutation[], donors: readonly Donor[]): Img {
  const img: Img = { data: Buffer.from(base), size: base.length };
  for (const mu of muts) {
    switch (mu.m) {
      case 'flip': {
        if (img.data.length === 0) break;
        const at = pickHot(layout, img, mu.pos, mu.hot);
        if (at < img.data.length) img.data[at] = img.data[at]! ^ mu.xor;
        break;
      }
      case 'splat': {
        if (img.data.length === 0) break;
        const at = pickHot(layout, img, mu.pos, mu.hot);
        seededBytes(mu.seed, mu.len).copy(img.data, at, 0, Math.max(0, Math.min(mu.len, img.data.length - at)));
        break;
      }
      case 'sifHeader':
        setField(img, 0, sifHeaderFields[mu.field % sifHeaderFields.length]!, mu.value);
        break;
      case 'sifDesc': {
        const sif = layout.sif;
        if (!sif) break;
        const slot = mu.used && sif.usedSlots.length > 0 ? sif.usedSlots[mu.slot % sif.usedSlots.length]! : mu.slot % Math.max(1, Math.min(sif.total + 2, MAX_DESCRIPTORS));
        setField(img, sif.descOff + slot * DESCRIPTOR_SIZE, sifDescriptorFields[mu.field % sifDescriptorFields.length]!, mu.value);
        break;
      }
      case 'squashfs': {
        if (!layout.squashfs.length) break;
        const at = layout.squashfs[mu.which % layout.squashfs.length]!;
        setField(img, at, squashfsFields[mu.field % squashfsFields.length]!, mu.value, () => layout.room.get(at) ?? img.size - at);
        break;
      }
      case 'ext': {
        if (!layout.ext.length) break;
        const sb = layout.ext[mu.which % layout.ext.length]!;
        const bytes = layout.room.get(sb - 1024) ?? img.size - (sb - 1024);
        // Block counts in blocks of the filesystem's own (pristine) block size.
        const logBlock = sb + 0x1c <= img.data.length ? Math.min(img.data.readUInt32LE(sb + 0x18), 6) : 0;
        const room = (field: Field) => (field.name.startsWith('blocksCount') ? Math.floor(bytes / (1024 * 2 ** logBlock)) : bytes);
        setField(img, sb, extFields[mu.field % extFields.length]!, mu.value, room);
        break;
      }
      case 'sifTable': {
        // The table grown or shrunk coherently: total, free, size and data offset agree, and
        // with `fit` the file (sparsely) holds the whole table.
        const sif = layout.sif;
        if (!sif || img.data.length < HEADER_SIZE) break;
        const total = BigInt(mu.total);
        const used = BigInt(sif.usedSlots.length);
        img.data.writeBigInt64LE(total, H.descriptorsTotal);
        img.data.writeBigInt64LE(mu.free === 'all' ? total : total > used ? total - used : 0n, H.descriptorsFree);
        img.data.writeBigInt64LE(total * BigInt(DESCRIPTOR_SIZE), H.descriptorsSize);
        const end = sif.descOff + mu.total * DESCRIPTOR_SIZE;
        if (mu.moveData) img.data.writeBigInt64LE(BigInt(end), H.dataOffset);
        if (mu.fit) img.size = Math.max(img.size, end);
        break;
      }
      case 'sifObject': {
        // One used object moved somewhere that matters: over the header or the table, onto
        // another object, to the end of the file (in or just past it), or emptied.
        const sif = layout.sif;
        if (!sif || sif.usedSlots.length === 0) break;
        const at = sif.descOff + sif.usedSlots[mu.slot % sif.usedSlots.length]! * DESCRIPTOR_SIZE;
        if (at + D.size + 8 > img.data.length) break;
        const other = layout.objects.length ? layout.objects[mu.slot % layout.objects.length]! : { offset: 0, size: 0 };
        const cur = { offset: Number(img.data.readBigInt64LE(at + D.offset)), size: Number(img.data.readBigInt64LE(at + D.size)) };
        const place: Record<typeof mu.place, [number, number]> = {
          header: [0, HEADER_SIZE],
          table: [sif.descOff, sif.total * DESCRIPTOR_SIZE],
          other: [other.offset, other.size],
          eof: [img.size - cur.size, cur.size],
          zero: [cur.offset, 0],
          huge: [cur.offset, img.size - cur.offset],
        };
        // Fields that held anything (2^63 - 1 read back as a double) are clamped to int64.
        const int64 = (n: number) => BigInt.asIntN(64, BigInt(Math.max(0, Math.min(Math.trunc(n), Number.MAX_SAFE_INTEGER))));
        const [offset, size] = place[mu.place];
        img.data.writeBigInt64LE(int64(offset + mu.d), at + D.offset);
        img.data.writeBigInt64LE(int64(size), at + D.size);
        break;
      }
      case 'truncate': {
        const len = mu.boundary && layout.boundaries.length ? layout.boundaries[mu.pick % layout.boundaries.length]! + mu.delta : mu.pick % (img.size + 1);
        const to = Math.max(0, Math.min(len, img.size));
        img.data = img.data.subarray(0, Math.min(to, img.data.length));
        img.size = to;
        break;
      }
      case 'extend': {
        const tail = mu.seed % 3 === 0 ? Buffer.alloc(mu.len) : seededBytes(mu.seed, mu.len);
        img.data = Buffer.concat([img.data, tail]);
        img.size = Math.max(img.size, img.data.length);
        break;
      }
      case 'sparse':
        img.size = Math.max(img.size, mu.size);
        break;
      case 'launch': {
        const cur = parseLaunchHeader(img.data.subarray(0, 4096))?.length ?? 0;
        const body = img.data.subarray(cur);
        const head = mu.variant === 'strip' ? Buffer.alloc(0) : launchHeader(mu.variant, mu.len);
        img.data = Buffer.concat([head, body]);
        img.size = Math.max(img.data.length, img.size - cur + head.length);
        break;
      }
      case 'transplant': {
        // Another image's filesystem start (superblocks and all) over one of this image's
        // partitions, or over its start: an ext4 where the SIF says squashfs, and so on.
        if (donors.length === 0) break;
        const donor = donors[mu.donor % donors.length]!;
        const starts = [...layout.squashfs, ...layout.ext.map((o) => o - 1024), ...layout.objects.map((o) => o.offset), layout.launch];
        const at = starts[mu.which % starts.length]!;
        donor.bytes.copy(img.data, at, 0, Math.max(0, Math.min(donor.bytes.length, img.data.length - at)));
        break;
      }
    }
  }
  // Files (and ByteSources) end before 2^53: the largest size a caller can state.
  img.size = Math.min(img.size, Number.MAX_SAFE_INTEGER);
  return img;
}

/** JSON of an input with bigints as strings (for counterexamples and the heartbeat). */
export function toJson(x: unknown): string {
  return JSON.stringify(x, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v instanceof Uint8Array ? `<${v.length} bytes>` : v));
}

/** What a thrown value is, for the outcome table and violation messages. */
export function errorSummary(err: unknown): string {
  if (err instanceof NotThisFormat) return `NotThisFormat(${err.format}): ${err.message}`;
  if (err instanceof Error) return `${err.name}${(err as { code?: unknown }).code !== undefined ? ` [${String((err as { code?: unknown }).code)}]` : ''}: ${err.message}`;
  return `non-Error thrown: ${String(err)}`;
}
