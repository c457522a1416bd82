// Byte-exact (de)serialisation of the header and descriptor structures, with no validation.
// int64 fields stay bigint here so that any on-disk value survives a decode/encode round trip;
// read.ts validates them before turning them into numbers.
//
// Layout (packed, little-endian): sif-format.md §3 (header) and §5 (descriptor).

import {
  DESCRIPTOR_SIZE,
  DataCryptoMessage,
  DataOCIBlob,
  DataOCIRootIndex,
  DataPartition,
  DataSBOM,
  DataSignature,
  EXTRA_SIZE,
  FINGERPRINT_SIZE,
  GO_ZERO_TIME,
  GROUP_MASK,
  HEADER_SIZE,
  NAME_SIZE,
  archNameFromBytes,
  dataTypeName,
  formatTypeName,
  fsTypeName,
  hashTypeName,
  messageTypeName,
  partTypeName,
  sbomFormatName,
} from './constants';
import type { SifDescriptor, SifHeader, SifLink, SifPartitionInfo } from './types';

/** Header fields exactly as stored. */
export interface RawHeader {
  launchScript: Buffer; // 32
  magic: Buffer; // 10
  version: Buffer; // 3
  arch: Buffer; // 3
  uuid: Buffer; // 16
  createdAt: bigint;
  modifiedAt: bigint;
  descriptorsFree: bigint;
  descriptorsTotal: bigint;
  descriptorsOffset: bigint;
  descriptorsSize: bigint;
  dataOffset: bigint;
  dataSize: bigint;
}

/** Descriptor fields exactly as stored. */
export interface RawDescriptor {
  dataType: number; // int32
  used: boolean;
  id: number; // uint32
  groupId: number; // uint32, mask included
  linkedId: number; // uint32, mask included
  offset: bigint;
  size: bigint;
  sizeWithPadding: bigint;
  createdAt: bigint;
  modifiedAt: bigint;
  uid: bigint;
  gid: bigint;
  name: Buffer; // 128
  extra: Buffer; // 384
}

/** Byte offsets of the descriptor fields. */
export const D = {
  dataType: 0,
  used: 4,
  id: 5,
  groupId: 9,
  linkedId: 13,
  offset: 17,
  size: 25,
  sizeWithPadding: 33,
  createdAt: 41,
  modifiedAt: 49,
  uid: 57,
  gid: 65,
  name: 73,
  extra: 201,
} as const;

/** Byte offsets of the header fields. */
export const H = {
  launchScript: 0,
  magic: 32,
  version: 42,
  arch: 45,
  uuid: 48,
  createdAt: 64,
  modifiedAt: 72,
  descriptorsFree: 80,
  descriptorsTotal: 88,
  descriptorsOffset: 96,
  descriptorsSize: 104,
  dataOffset: 112,
  dataSize: 120,
} as const;

export const GO_ZERO_TIME_BIG = BigInt(GO_ZERO_TIME);

export function decodeRawHeader(b: Buffer): RawHeader {
  return {
    launchScript: Buffer.from(b.subarray(0, 32)),
    magic: Buffer.from(b.subarray(32, 42)),
    version: Buffer.from(b.subarray(42, 45)),
    arch: Buffer.from(b.subarray(45, 48)),
    uuid: Buffer.from(b.subarray(48, 64)),
    createdAt: b.readBigInt64LE(H.createdAt),
    modifiedAt: b.readBigInt64LE(H.modifiedAt),
    descriptorsFree: b.readBigInt64LE(H.descriptorsFree),
    descriptorsTotal: b.readBigInt64LE(H.descriptorsTotal),
    descriptorsOffset: b.readBigInt64LE(H.descriptorsOffset),
    descriptorsSize: b.readBigInt64LE(H.descriptorsSize),
    dataOffset: b.readBigInt64LE(H.dataOffset),
    dataSize: b.readBigInt64LE(H.dataSize),
  };
}

export function encodeRawHeader(h: RawHeader): Buffer {
  const b = Buffer.alloc(HEADER_SIZE);
  h.launchScript.copy(b, H.launchScript, 0, 32);
  h.magic.copy(b, H.magic, 0, 10);
  h.version.copy(b, H.version, 0, 3);
  h.arch.copy(b, H.arch, 0, 3);
  h.uuid.copy(b, H.uuid, 0, 16);
  b.writeBigInt64LE(h.createdAt, H.createdAt);
  b.writeBigInt64LE(h.modifiedAt, H.modifiedAt);
  b.writeBigInt64LE(h.descriptorsFree, H.descriptorsFree);
  b.writeBigInt64LE(h.descriptorsTotal, H.descriptorsTotal);
  b.writeBigInt64LE(h.descriptorsOffset, H.descriptorsOffset);
  b.writeBigInt64LE(h.descriptorsSize, H.descriptorsSize);
  b.writeBigInt64LE(h.dataOffset, H.dataOffset);
  b.writeBigInt64LE(h.dataSize, H.dataSize);
  return b;
}

/**
 * The fields of a 585-byte slot. `name` and `extra` are copies, unless `views` (for a caller
 * that drops the result before `b` changes, as loadSif does: descriptorView copies what stays).
 */
export function decodeRawDescriptor(b: Buffer, views = false): RawDescriptor {
  const part = (start: number, end: number) => (views ? b.subarray(start, end) : Buffer.from(b.subarray(start, end)));
  return {
    dataType: b.readInt32LE(D.dataType),
    // Go decodes a bool as "byte != 0".
    used: b[D.used] !== 0,
    id: b.readUInt32LE(D.id),
    groupId: b.readUInt32LE(D.groupId),
    linkedId: b.readUInt32LE(D.linkedId),
    offset: b.readBigInt64LE(D.offset),
    size: b.readBigInt64LE(D.size),
    sizeWithPadding: b.readBigInt64LE(D.sizeWithPadding),
    createdAt: b.readBigInt64LE(D.createdAt),
    modifiedAt: b.readBigInt64LE(D.modifiedAt),
    uid: b.readBigInt64LE(D.uid),
    gid: b.readBigInt64LE(D.gid),
    name: part(D.name, D.name + NAME_SIZE),
    extra: part(D.extra, D.extra + EXTRA_SIZE),
  };
}

export function encodeRawDescriptor(d: RawDescriptor): Buffer {
  const b = Buffer.alloc(DESCRIPTOR_SIZE);
  b.writeInt32LE(d.dataType, D.dataType);
  b[D.used] = d.used ? 1 : 0;
  b.writeUInt32LE(d.id >>> 0, D.id);
  b.writeUInt32LE(d.groupId >>> 0, D.groupId);
  b.writeUInt32LE(d.linkedId >>> 0, D.linkedId);
  b.writeBigInt64LE(d.offset, D.offset);
  b.writeBigInt64LE(d.size, D.size);
  b.writeBigInt64LE(d.sizeWithPadding, D.sizeWithPadding);
  b.writeBigInt64LE(d.createdAt, D.createdAt);
  b.writeBigInt64LE(d.modifiedAt, D.modifiedAt);
  b.writeBigInt64LE(d.uid, D.uid);
  b.writeBigInt64LE(d.gid, D.gid);
  d.name.copy(b, D.name, 0, NAME_SIZE);
  d.extra.copy(b, D.extra, 0, EXTRA_SIZE);
  return b;
}

/** An all-zero (unused) descriptor. */
export function emptyRawDescriptor(): RawDescriptor {
  return decodeRawDescriptor(Buffer.alloc(DESCRIPTOR_SIZE));
}

/** Unix seconds or null (Go zero time). Values beyond 2^53 lose precision; the raw bytes keep them. */
export function timeFromRaw(t: bigint): number | null {
  return t === GO_ZERO_TIME_BIG ? null : Number(t);
}

export function timeToRaw(t: number | null): bigint {
  return t === null ? GO_ZERO_TIME_BIG : BigInt(t);
}

/** Bytes up to the last non-NUL (Go trims trailing NULs only). */
export function trimTrailingNuls(b: Buffer): Buffer {
  let end = b.length;
  while (end > 0 && b[end - 1] === 0) end--;
  return b.subarray(0, end);
}

export function uuidToString(b: Buffer): string | null {
  if (b.every((x) => x === 0)) return null;
  const h = b.toString('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20, 32)}`;
}

export function decodeLink(raw: number): SifLink | null {
  if (raw === 0) return null;
  if ((raw & GROUP_MASK) >>> 0 === GROUP_MASK) return { type: 'group', id: (raw & ~GROUP_MASK) >>> 0 };
  return { type: 'object', id: raw >>> 0 };
}

/** The public header view of a raw header (numbers as-is; the caller has range-checked them). */
export function headerView(h: RawHeader, raw: Buffer = encodeRawHeader(h)): SifHeader {
  return {
    launchScript: trimTrailingNuls(h.launchScript).toString('latin1'),
    launchScriptBytes: Buffer.from(h.launchScript),
    version: trimTrailingNuls(h.version).toString('latin1'),
    arch: archNameFromBytes(h.arch),
    archCode: trimTrailingNuls(h.arch).toString('latin1'),
    uuid: uuidToString(h.uuid),
    uuidBytes: Buffer.from(h.uuid),
    createdAt: timeFromRaw(h.createdAt),
    modifiedAt: timeFromRaw(h.modifiedAt),
    descriptorsFree: Number(h.descriptorsFree),
    descriptorsTotal: Number(h.descriptorsTotal),
    descriptorsOffset: Number(h.descriptorsOffset),
    descriptorsSize: Number(h.descriptorsSize),
    dataOffset: Number(h.dataOffset),
    dataSize: Number(h.dataSize),
    raw: Buffer.from(raw),
  };
}

/** A partition descriptor's extras: filesystem, partition type, architecture. */
function partitionInfo(x: Buffer): SifPartitionInfo {
  const arch = x.subarray(8, 11);
  return {
    fsType: x.readInt32LE(0),
    fsTypeName: fsTypeName(x.readInt32LE(0)),
    partType: x.readInt32LE(4),
    partTypeName: partTypeName(x.readInt32LE(4)),
    arch: archNameFromBytes(arch),
    archCode: trimTrailingNuls(arch).toString('latin1'),
  };
}

/** What image detection reads of a used descriptor (lib/image/formats/sif.ts). */
export type DescriptorSummary = Pick<SifDescriptor, 'slot' | 'id' | 'dataType' | 'groupId' | 'offset' | 'size' | 'name' | 'partition'>;

/**
 * The summary of a used descriptor: descriptorView's fields detection reads, and nothing it
 * would copy or convert for nothing (raw bytes, times, links, other extras). Every init()
 * loads a SIF's table; the full views are for loadSif()'s callers.
 */
export function descriptorSummary(d: RawDescriptor, slot: number): DescriptorSummary {
  const s: DescriptorSummary = {
    slot,
    id: d.id,
    dataType: d.dataType,
    groupId: (d.groupId & ~GROUP_MASK) >>> 0,
    offset: Number(d.offset),
    size: Number(d.size),
    name: trimTrailingNuls(d.name).toString('utf8'),
  };
  if (d.dataType === DataPartition) s.partition = partitionInfo(d.extra);
  return s;
}

/** The public view of a used descriptor, with its extras decoded by type. */
export function descriptorView(d: RawDescriptor, slot: number, raw: Buffer = encodeRawDescriptor(d)): SifDescriptor {
  // One copy of the slot (it may be a view of a borrowed window); nameBytes and extra are views of it.
  const own = Buffer.from(raw);
  const view: SifDescriptor = {
    slot,
    id: d.id,
    dataType: d.dataType,
    dataTypeName: dataTypeName(d.dataType),
    groupId: (d.groupId & ~GROUP_MASK) >>> 0,
    groupIdRaw: d.groupId,
    link: decodeLink(d.linkedId),
    linkedIdRaw: d.linkedId,
    offset: Number(d.offset),
    size: Number(d.size),
    sizeWithPadding: Number(d.sizeWithPadding),
    createdAt: timeFromRaw(d.createdAt),
    modifiedAt: timeFromRaw(d.modifiedAt),
    uid: Number(d.uid),
    gid: Number(d.gid),
    name: trimTrailingNuls(d.name).toString('utf8'),
    nameBytes: own.subarray(D.name, D.name + NAME_SIZE),
    extra: own.subarray(D.extra, D.extra + EXTRA_SIZE),
    raw: own,
  };
  const x = d.extra;
  switch (d.dataType) {
    case DataPartition: {
      view.partition = partitionInfo(x);
      break;
    }
    case DataSignature: {
      const fp = x.subarray(4, 4 + FINGERPRINT_SIZE);
      view.signature = {
        hashType: x.readInt32LE(0),
        hashTypeName: hashTypeName(x.readInt32LE(0)),
        fingerprint: fp.every((v) => v === 0) ? null : fp.toString('hex').toUpperCase(),
      };
      break;
    }
    case DataCryptoMessage:
      view.cryptoMessage = {
        format: x.readInt32LE(0),
        formatName: formatTypeName(x.readInt32LE(0)),
        message: x.readInt32LE(4),
        messageName: messageTypeName(x.readInt32LE(4)),
      };
      break;
    case DataSBOM:
      view.sbom = { format: x.readInt32LE(0), formatName: sbomFormatName(x.readInt32LE(0)) };
      break;
    case DataOCIRootIndex:
    case DataOCIBlob: {
      const nul = x.indexOf(0);
      view.ociDigest = x.subarray(0, nul < 0 ? x.length : nul).toString('latin1');
      break;
    }
  }
  return view;
}
