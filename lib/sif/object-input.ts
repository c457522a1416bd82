// What a caller says about a new data object, checked and turned into descriptor fields
// (the counterpart of Go's NewDescriptorInput + fillDescriptor). Everything is validated here,
// before the writer touches the image.

import { createHash } from 'node:crypto';
import { ImgmountError, invalidArgType, invalidArgValue } from '../errors';
import {
  DESCRIPTOR_SIZE,
  DEFAULT_GROUP,
  DataCryptoMessage,
  DataOCIBlob,
  DataOCIRootIndex,
  DataPartition,
  DataSBOM,
  DataSignature,
  ENTITY_SIZE,
  EXTRA_SIZE,
  GROUP_MASK,
  MAX_GROUP,
  NAME_SIZE,
  archBytesFromName,
} from './constants';
import { emptyRawDescriptor, encodeRawDescriptor, timeToRaw } from './codec';
import type { RawDescriptor } from './codec';
import type { SifLink } from './types';

/** A new data object for createSif / SifWriter.addObject. */
export interface SifObjectInput {
  /** DataType (0x4001 Def.FILE … 0x400B OCI.Blob); any int32 is stored as given. */
  dataType: number;
  /** The object's bytes (default: empty). An async iterable (e.g. a Readable) is streamed. */
  data?: Uint8Array | AsyncIterable<Uint8Array>;
  /** Up to 128 bytes (UTF-8 for strings). */
  name?: string | Uint8Array;
  /** Group number 1..0x0FFFFFFF (default 1); null puts the object in no group. */
  group?: number | null;
  /** Link to an object ID or a group (default none). */
  link?: SifLink | null;
  /** Alignment of the data offset in bytes; 0 = none. Default 4096 for partitions, 0 otherwise. */
  alignment?: number;
  /** Object created/modified time, Unix seconds; null = Go zero time. Default: the operation's time. */
  time?: number | null;
  /** Deprecated uid/gid fields; default 0 (what current writers store). Kept for byte-exact rewrites. */
  uid?: number;
  gid?: number;
  /** Partition metadata (DataPartition only). arch is the Go name ("amd64", "386", …). */
  partition?: { fsType: number; partType: number; arch: string };
  /** Signature metadata (DataSignature only): hash type 1..5, fingerprint as hex or bytes (≤ 256). */
  signature?: { hashType: number; fingerprint?: string | Uint8Array | null };
  /** Crypto message metadata (DataCryptoMessage only). */
  cryptoMessage?: { format: number; message: number };
  /** SBOM metadata (DataSBOM only). */
  sbom?: { format: number };
  /**
   * Raw Extra bytes (≤ 384), for custom metadata or a byte-exact copy. Replaces the typed
   * metadata above and the OCI digest that is otherwise computed from the data.
   */
  extra?: Uint8Array;
}

/** A checked object input: descriptor fields minus placement (id, offset, size). */
export interface PreparedObject {
  dataType: number;
  groupIdRaw: number;
  linkedIdRaw: number;
  alignment: number;
  name: Buffer;
  /** null: OCI object whose digest is computed from the data as it is written. */
  extra: Buffer | null;
  time: number | null | undefined;
  uid: bigint;
  gid: bigint;
  /** Set for partitions, so the writer can apply primary-partition rules. */
  partType?: number;
  arch?: Buffer;
  data: Uint8Array | AsyncIterable<Uint8Array>;
}

const INT32_MIN = -(2 ** 31);
const INT32_MAX = 2 ** 31 - 1;

function int32(name: string, v: unknown): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < INT32_MIN || v > INT32_MAX) {
    throw invalidArgType(name, 'a 32-bit integer', v);
  }
  return v;
}

function safeInt(name: string, v: unknown, min = Number.MIN_SAFE_INTEGER): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min) {
    throw invalidArgType(name, min === 0 ? 'a non-negative safe integer' : 'a safe integer', v);
  }
  return v;
}

/** Validates `input` (argument errors are TypeErrors with ERR_INVALID_ARG_* codes). */
export function prepareObject(input: SifObjectInput, argName = 'input'): PreparedObject {
  if (typeof input !== 'object' || input === null) throw invalidArgType(argName, 'an object', input);
  const dataType = int32(`${argName}.dataType`, input.dataType);

  const data = input.data ?? new Uint8Array(0);
  if (!(data instanceof Uint8Array) && typeof (data as AsyncIterable<Uint8Array>)[Symbol.asyncIterator] !== 'function') {
    throw invalidArgType(`${argName}.data`, 'a Uint8Array or an async iterable of Uint8Array', data);
  }

  const name = Buffer.alloc(NAME_SIZE);
  if (input.name !== undefined) {
    const nb = typeof input.name === 'string' ? Buffer.from(input.name, 'utf8') : input.name;
    if (!(nb instanceof Uint8Array)) throw invalidArgType(`${argName}.name`, 'a string or Uint8Array', input.name);
    if (nb.length > NAME_SIZE) throw invalidArgValue(`${argName}.name`, input.name, `must be at most ${NAME_SIZE} bytes`);
    name.set(nb);
  }

  let groupIdRaw = (GROUP_MASK | DEFAULT_GROUP) >>> 0;
  if (input.group === null) {
    groupIdRaw = GROUP_MASK >>> 0;
  } else if (input.group !== undefined) {
    const g = input.group;
    if (typeof g !== 'number' || !Number.isInteger(g) || g < 1 || g > MAX_GROUP) {
      throw invalidArgValue(`${argName}.group`, g, `must be an integer in 1..${MAX_GROUP} (null for no group)`);
    }
    groupIdRaw = (GROUP_MASK | g) >>> 0;
  }

  let linkedIdRaw = 0;
  if (input.link !== undefined && input.link !== null) {
    const l = input.link;
    if (typeof l !== 'object' || (l.type !== 'object' && l.type !== 'group')) {
      throw invalidArgType(`${argName}.link`, "{ type: 'object' | 'group', id }", l);
    }
    // Object IDs with all mask bits set would read back as a group link.
    const max = l.type === 'group' ? MAX_GROUP : 0xefffffff;
    if (typeof l.id !== 'number' || !Number.isInteger(l.id) || l.id < 1 || l.id > max) {
      throw invalidArgValue(`${argName}.link.id`, l.id, `must be an integer in 1..${max}`);
    }
    linkedIdRaw = l.type === 'group' ? (GROUP_MASK | l.id) >>> 0 : l.id;
  }

  // Go's default since v2.7.2: only partitions are page-aligned.
  const defaultAlignment = dataType === DataPartition ? 4096 : 0;
  const alignment =
    input.alignment === undefined ? defaultAlignment : safeInt(`${argName}.alignment`, input.alignment, 0);

  let time: number | null | undefined;
  if (input.time === null || input.time === undefined) time = input.time;
  else time = safeInt(`${argName}.time`, input.time);

  const uid = BigInt(input.uid === undefined ? 0 : safeInt(`${argName}.uid`, input.uid));
  const gid = BigInt(input.gid === undefined ? 0 : safeInt(`${argName}.gid`, input.gid));

  const kinds = ['partition', 'signature', 'cryptoMessage', 'sbom', 'extra'] as const;
  const given = kinds.filter((k) => input[k] !== undefined);
  if (given.length > 1) throw invalidArgValue(argName, given.join(', '), `may set only one of ${kinds.join(', ')}`);
  const needType = (key: string, want: number) => {
    if (dataType !== want) {
      throw invalidArgValue(`${argName}.${key}`, dataType, `is only valid for data type 0x${want.toString(16)}`);
    }
  };

  let extra: Buffer | null = Buffer.alloc(EXTRA_SIZE);
  let partType: number | undefined;
  let arch: Buffer | undefined;
  if (input.extra !== undefined) {
    if (!(input.extra instanceof Uint8Array)) throw invalidArgType(`${argName}.extra`, 'a Uint8Array', input.extra);
    if (input.extra.length > EXTRA_SIZE) {
      throw invalidArgValue(`${argName}.extra`, input.extra, `must be at most ${EXTRA_SIZE} bytes`);
    }
    extra.set(input.extra);
    if (dataType === DataPartition) {
      // Raw partition metadata still counts for the primary-partition rules.
      partType = extra.readInt32LE(4);
      arch = Buffer.from(extra.subarray(8, 11));
    }
  } else if (input.partition !== undefined) {
    needType('partition', DataPartition);
    const p = input.partition;
    const ab = typeof p?.arch === 'string' ? archBytesFromName(p.arch) : undefined;
    if (ab === undefined) {
      throw invalidArgValue(`${argName}.partition.arch`, p?.arch, 'must be a known Go architecture name (e.g. "amd64")');
    }
    partType = int32(`${argName}.partition.partType`, p.partType);
    arch = ab;
    writePartitionExtra(extra, int32(`${argName}.partition.fsType`, p.fsType), partType, ab);
  } else if (input.signature !== undefined) {
    needType('signature', DataSignature);
    const s = input.signature;
    extra.writeInt32LE(int32(`${argName}.signature.hashType`, s?.hashType), 0);
    const fp = s.fingerprint;
    if (fp !== undefined && fp !== null) {
      const fb = typeof fp === 'string' ? parseHex(`${argName}.signature.fingerprint`, fp) : fp;
      if (!(fb instanceof Uint8Array) || fb.length > ENTITY_SIZE) {
        throw invalidArgValue(`${argName}.signature.fingerprint`, fp, `must be hex or bytes, at most ${ENTITY_SIZE} bytes`);
      }
      extra.set(fb, 4);
    }
  } else if (input.cryptoMessage !== undefined) {
    needType('cryptoMessage', DataCryptoMessage);
    extra.writeInt32LE(int32(`${argName}.cryptoMessage.format`, input.cryptoMessage?.format), 0);
    extra.writeInt32LE(int32(`${argName}.cryptoMessage.message`, input.cryptoMessage.message), 4);
  } else if (input.sbom !== undefined) {
    needType('sbom', DataSBOM);
    extra.writeInt32LE(int32(`${argName}.sbom.format`, input.sbom?.format), 0);
  } else if (dataType === DataOCIRootIndex || dataType === DataOCIBlob) {
    extra = null; // digest of the data, filled in as it is written
  }

  const prepared: PreparedObject = { dataType, groupIdRaw, linkedIdRaw, alignment, name, extra, time, uid, gid, data };
  if (partType !== undefined) prepared.partType = partType;
  if (arch !== undefined) prepared.arch = arch;
  return prepared;
}

/** Partition extra: Fstype, Parttype, Arch(3); the other 373 bytes zero (as Go re-marshals it). */
export function writePartitionExtra(extra: Buffer, fsType: number, partType: number, arch: Uint8Array): void {
  arch = Uint8Array.from(arch.subarray(0, 3)); // may alias `extra`
  extra.fill(0);
  extra.writeInt32LE(fsType, 0);
  extra.writeInt32LE(partType, 4);
  extra.set(arch.subarray(0, 3), 8);
}

/** Extra bytes holding an OCI digest text ("sha256:<hex>"), zero-padded. */
export function ociDigestExtra(digest: string): Buffer {
  const b = Buffer.alloc(EXTRA_SIZE);
  b.write(digest, 'latin1');
  return b;
}

export function sha256Extra(data: Uint8Array): Buffer {
  return ociDigestExtra('sha256:' + createHash('sha256').update(data).digest('hex'));
}

/**
 * The descriptor fields for `p` before placement: unused, ID/offset/size 0, times = `time`
 * unless the object has its own.
 */
export function preparedDescriptor(p: PreparedObject, time: number | null, extra: Buffer): RawDescriptor {
  const d = emptyRawDescriptor();
  d.dataType = p.dataType;
  d.groupId = p.groupIdRaw;
  d.linkedId = p.linkedIdRaw;
  const t = timeToRaw(p.time === undefined ? time : p.time);
  d.createdAt = t;
  d.modifiedAt = t;
  d.uid = p.uid;
  d.gid = p.gid;
  d.name = Buffer.from(p.name);
  d.extra = Buffer.from(extra);
  return d;
}

/**
 * The 585 bytes of the (still unused) descriptor the writer fills in for `input` before placing
 * it, like Go's fillDescriptor with time `time` (default: Go zero). `data` must be bytes, not a stream.
 */
export function describeObjectInput(input: SifObjectInput, time: number | null = null): Buffer {
  const p = prepareObject(input);
  if (!(p.data instanceof Uint8Array)) throw invalidArgType('input.data', 'a Uint8Array here', p.data);
  const d = preparedDescriptor(p, time, p.extra ?? sha256Extra(p.data));
  const b = encodeRawDescriptor(d);
  if (b.length !== DESCRIPTOR_SIZE) throw new Error('unreachable: descriptor size');
  return b;
}

/**
 * Rounds `offset` up to a multiple of `alignment` (≤ 0: unchanged). Errors, rather than wrap,
 * when the result would not fit in an int64.
 */
export function nextAligned(offset: bigint, alignment: bigint | number): bigint {
  const a = BigInt(alignment);
  if (a <= 0n || offset % a === 0n) return offset;
  const pad = a - (offset % a);
  if (2n ** 63n - 1n - offset < pad) {
    throw new ImgmountError('ERR_SIF_WRITE', `aligning offset ${offset} to ${a} bytes overflows int64`, {
      details: { offset: offset.toString(), alignment: a.toString() },
    });
  }
  return offset + pad;
}

function parseHex(name: string, s: string): Buffer {
  if (!/^([0-9a-fA-F]{2})*$/.test(s)) throw invalidArgValue(name, s, 'must be an even number of hex digits');
  return Buffer.from(s, 'hex');
}
