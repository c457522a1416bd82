// The byte streams that SIF signatures digest (sif-format.md §11). They leave out everything a
// rewrite may legitimately change (arch, times, counts, offsets, absolute IDs), so a signed
// image stays verifiable after objects move.

import { invalidArgType } from '../errors';
import { DESCRIPTOR_SIZE, HEADER_SIZE } from './constants';
import { D, H } from './codec';
import type { SifDescriptor, SifHeader, SifImage } from './types';

/** 61 bytes: LaunchScript(32) ‖ Magic(10) ‖ Version(3) ‖ UUID(16). */
export function headerIntegrityBytes(header: Pick<SifHeader, 'raw'> | Uint8Array): Buffer {
  const raw = rawOf(header, HEADER_SIZE, 'header');
  return Buffer.concat([raw.subarray(H.launchScript, H.arch), raw.subarray(H.uuid, H.uuid + 16)]);
}

/**
 * 557 bytes: DataType ‖ Used ‖ RelativeID(u32 LE) ‖ LinkedID ‖ Size ‖ CreatedAt ‖ UID ‖ GID ‖
 * Name(128) ‖ Extra(384).
 */
export function descriptorIntegrityBytes(d: Pick<SifDescriptor, 'raw'> | Uint8Array, relativeId: number): Buffer {
  const raw = rawOf(d, DESCRIPTOR_SIZE, 'descriptor');
  if (!Number.isInteger(relativeId) || relativeId < 0 || relativeId > 0xffffffff) {
    throw invalidArgType('relativeId', 'an unsigned 32-bit integer', relativeId);
  }
  const rel = Buffer.alloc(4);
  rel.writeUInt32LE(relativeId);
  return Buffer.concat([
    raw.subarray(D.dataType, D.id), // DataType, Used
    rel,
    raw.subarray(D.linkedId, D.offset),
    raw.subarray(D.size, D.sizeWithPadding),
    raw.subarray(D.createdAt, D.modifiedAt),
    raw.subarray(D.uid, DESCRIPTOR_SIZE), // UID, GID, Name, Extra
  ]);
}

/**
 * ID minus the smallest ID among used descriptors with the same raw GroupID (mask included, as
 * the Go library keys it).
 */
export function relativeId(img: Pick<SifImage, 'descriptors'>, d: Pick<SifDescriptor, 'id' | 'groupIdRaw'>): number {
  let min = d.id;
  for (const o of img.descriptors) if (o.groupIdRaw === d.groupIdRaw && o.id < min) min = o.id;
  return (d.id - min) >>> 0;
}

function rawOf(x: { raw: Buffer } | Uint8Array, size: number, what: string): Buffer {
  const raw = x instanceof Uint8Array ? Buffer.from(x.buffer, x.byteOffset, x.byteLength) : x?.raw;
  if (!(raw instanceof Uint8Array) || raw.length !== size) {
    throw invalidArgType(what, `a decoded SIF ${what} or its ${size} raw bytes`, x);
  }
  return raw;
}
