// Loading a SIF image: the 128-byte header, then the descriptor table in one read. Object data
// is never read here. Validation follows sif-format.md §8: hard errors for what would make
// later reads wrong or unbounded, warnings for what is merely odd.

import { ImgmountError, outOfRange, throwIfAborted } from '../errors';
import type { ByteSource } from '../io/byte-source';
import {
  DESCRIPTOR_SIZE,
  HEADER_SIZE,
  MAGIC,
  MAX_DESCRIPTORS,
  PartPrimSys,
  VERSION_01,
} from './constants';
import { D, H, decodeRawDescriptor, decodeRawHeader, descriptorSummary, descriptorView, headerView } from './codec';
import type { DescriptorSummary, RawDescriptor, RawHeader } from './codec';
import type { SifDescriptor, SifImage } from './types';

// The integrity streams are computed from what loadSif returns; offered here too.
export { descriptorIntegrityBytes, headerIntegrityBytes, relativeId } from './integrity';

export interface LoadSifOptions {
  /** Named in error messages and set as the error's `path`. */
  path?: string;
  /** Checked before each read: an abort stops loading (nothing is changed by loading). */
  signal?: AbortSignal;
}

/** What the writer needs beyond the public image: the raw header and every slot's bytes. */
export interface LoadedSifTable {
  image: SifImage;
  header: RawHeader;
  /** All DescriptorsTotal slots (used or not), 585 bytes each, in table order (empty from loadSif, which does not keep them). */
  slots: Buffer[];
}

const TWO_53 = 2n ** 53n;

/** Loads and validates the header and descriptor table of a SIF image. */
export async function loadSif(source: ByteSource, options: LoadSifOptions = {}): Promise<SifImage> {
  return imageOf(await load(source, options, false, descriptorView));
}

/** loadSif, also returning the raw header and all slots (for rewriting an image in place). */
export async function loadSifTable(source: ByteSource, options: LoadSifOptions = {}): Promise<LoadedSifTable> {
  const t = await load(source, options, true, descriptorView);
  return { image: imageOf(t), header: t.header, slots: t.slots };
}

function imageOf(t: LoadedTable<SifDescriptor>): SifImage {
  return { header: headerView(t.header, t.headerBytes), descriptors: t.descriptors, warnings: t.warnings, size: t.size };
}

/** What image detection needs of a SIF (every init() loads one): loadSif's checks and warnings, summaries of the used descriptors. */
export interface SifSummary {
  descriptors: DescriptorSummary[];
  warnings: string[];
}

/** loadSif with the same validation, returning descriptor summaries (no header view, no copies). */
export async function loadSifSummary(source: ByteSource, options: LoadSifOptions = {}): Promise<SifSummary> {
  const t = await load(source, options, false, descriptorSummary);
  return { descriptors: t.descriptors, warnings: t.warnings };
}

interface LoadedTable<V> {
  header: RawHeader;
  headerBytes: Buffer;
  descriptors: V[];
  warnings: string[];
  size: number;
  slots: Buffer[];
}

async function load<V extends DescriptorSummary>(
  source: ByteSource,
  options: LoadSifOptions,
  keepSlots: boolean,
  view: (rd: RawDescriptor, slot: number, bytes: Buffer) => V,
): Promise<LoadedTable<V>> {
  type Code = 'ERR_SIF_INVALID' | 'ERR_SIF_TRUNCATED' | 'ERR_SIF_UNSUPPORTED_VERSION';
  const fail = (code: Code, msg: string, details: Record<string, unknown> = {}) =>
    new ImgmountError(code, options.path === undefined ? msg : `${options.path}: ${msg}`, {
      ...(options.path === undefined ? {} : { path: options.path }),
      details,
    });

  const fileSize = source.size;
  if (fileSize < HEADER_SIZE) {
    throw fail('ERR_SIF_TRUNCATED', `file is ${fileSize} bytes, shorter than the ${HEADER_SIZE}-byte SIF header`, {
      fileSize,
    });
  }
  throwIfAborted(options.signal);
  const hb = await source.read(0, HEADER_SIZE);
  if (hb.length < HEADER_SIZE) {
    throw fail('ERR_SIF_TRUNCATED', `short read of the SIF header: got ${hb.length} of ${HEADER_SIZE} bytes`, {
      fileSize,
    });
  }

  const magic = hb.subarray(H.magic, H.magic + MAGIC.length);
  if (!magic.equals(MAGIC)) {
    throw fail(
      'ERR_SIF_INVALID',
      `not a SIF image: bad magic at byte offset ${H.magic} (expected "SIF_MAGIC\\0", found ${quote(magic)})`,
      { field: 'magic', offset: H.magic, found: Array.from(magic) },
    );
  }
  const version = hb.subarray(H.version, H.version + 3);
  if (!version.equals(VERSION_01)) {
    throw fail(
      'ERR_SIF_UNSUPPORTED_VERSION',
      `unsupported SIF version ${quote(version)} at byte offset ${H.version} (bytes ${hex(version)}); ` +
        'only "01\\0" is supported',
      { field: 'version', offset: H.version, version: Array.from(version) },
    );
  }

  const rh = decodeRawHeader(hb);
  const counts = [
    'descriptorsFree',
    'descriptorsTotal',
    'descriptorsOffset',
    'descriptorsSize',
    'dataOffset',
    'dataSize',
  ] as const;
  for (const field of counts) {
    const v = rh[field];
    if (v < 0n || v >= TWO_53) {
      throw fail(
        'ERR_SIF_INVALID',
        `header field ${field} at byte offset ${H[field]} is ${v}, outside [0, 2^53)`,
        { field, offset: H[field], value: v.toString() },
      );
    }
  }
  const free = Number(rh.descriptorsFree);
  const total = Number(rh.descriptorsTotal);
  const descOff = Number(rh.descriptorsOffset);
  const descSize = Number(rh.descriptorsSize);
  const dataOffset = Number(rh.dataOffset);
  const dataSize = Number(rh.dataSize);
  // Cap before any size arithmetic, read or allocation depends on the count: this is what
  // bounds the table read below (and the partition header reads of detection) for any file.
  if (total > MAX_DESCRIPTORS) {
    throw fail(
      'ERR_SIF_INVALID',
      `header descriptorsTotal (byte offset ${H.descriptorsTotal}) is ${total}, ` +
        `above the limit of ${MAX_DESCRIPTORS} descriptors (real images have 48)`,
      { field: 'descriptorsTotal', offset: H.descriptorsTotal, value: total, limit: MAX_DESCRIPTORS },
    );
  }
  if (free > total) {
    throw fail('ERR_SIF_INVALID', `header descriptorsFree (${free}) is larger than descriptorsTotal (${total})`, {
      field: 'descriptorsFree',
      free,
      total,
    });
  }
  const tableBytes = total * DESCRIPTOR_SIZE;
  if (descSize < tableBytes) {
    throw fail(
      'ERR_SIF_INVALID',
      `header descriptorsSize (${descSize}) is smaller than descriptorsTotal × ${DESCRIPTOR_SIZE} (${tableBytes})`,
      { field: 'descriptorsSize', descriptorsSize: descSize, needed: tableBytes },
    );
  }
  const tableEnd = descOff + tableBytes;
  if (tableEnd > fileSize) {
    throw fail(
      'ERR_SIF_TRUNCATED',
      `descriptor table (bytes ${descOff}-${tableEnd}, ${total} slots) extends past the end of the ${fileSize}-byte file`,
      { descriptorsOffset: descOff, tableEnd, fileSize },
    );
  }

  const warnings: string[] = [];
  if (total > 0 && descOff < HEADER_SIZE) {
    warnings.push(`descriptor table at byte offset ${descOff} overlaps the ${HEADER_SIZE}-byte header`);
  }
  if (dataOffset < tableEnd) {
    warnings.push(`data section offset ${dataOffset} lies inside the descriptor table (bytes ${descOff}-${tableEnd})`);
  }
  for (const t of ['createdAt', 'modifiedAt'] as const) {
    if (!Number.isSafeInteger(Number(rh[t])) || rh[t] <= -TWO_53 || rh[t] >= TWO_53) {
      warnings.push(`header ${t} ${rh[t]} is beyond ±2^53 and is shown rounded`);
    }
  }

  throwIfAborted(options.signal);
  const table = tableBytes > 0 ? await source.read(descOff, tableBytes) : Buffer.alloc(0);
  throwIfAborted(options.signal);
  if (table.length < tableBytes) {
    throw fail('ERR_SIF_TRUNCATED', `short read of the descriptor table: got ${table.length} of ${tableBytes} bytes`, {
      descriptorsOffset: descOff,
      fileSize,
    });
  }

  const slots: Buffer[] = [];
  const descriptors: V[] = [];
  // The architecture bytes of the (last) primary partition, checked against the header's below.
  let primArch: Buffer | undefined;
  const slotOfId = new Map<number, number>();
  for (let slot = 0; slot < total; slot++) {
    if (table[slot * DESCRIPTOR_SIZE + D.used] === 0) {
      if (keepSlots) slots.push(table.subarray(slot * DESCRIPTOR_SIZE, (slot + 1) * DESCRIPTOR_SIZE));
      continue; // unused slots are skipped whatever else they hold
    }
    const sb = table.subarray(slot * DESCRIPTOR_SIZE, (slot + 1) * DESCRIPTOR_SIZE);
    if (keepSlots) slots.push(sb);
    const at = descOff + slot * DESCRIPTOR_SIZE;
    const where = `descriptor slot ${slot} (byte offset ${at})`;
    // Views of the table: only the descriptor view below (which copies) outlives this loop.
    const rd = decodeRawDescriptor(sb, true);
    if (rd.id === 0) {
      throw fail('ERR_SIF_INVALID', `${where}: object ID is 0`, { slot, offset: at, field: 'id' });
    }
    const dup = slotOfId.get(rd.id);
    if (dup !== undefined) {
      throw fail('ERR_SIF_INVALID', `${where}: object ID ${rd.id} is already used by slot ${dup}`, {
        slot,
        id: rd.id,
        otherSlot: dup,
      });
    }
    slotOfId.set(rd.id, slot);
    for (const field of ['offset', 'size'] as const) {
      const v = rd[field];
      if (v < 0n || v >= TWO_53) {
        throw fail('ERR_SIF_INVALID', `${where}: object ${rd.id} ${field} is ${v}, outside [0, 2^53)`, {
          slot,
          id: rd.id,
          field,
          value: v.toString(),
        });
      }
    }
    const d = view(rd, slot, sb);
    if (d.partition?.partType === PartPrimSys) primArch = rd.extra.subarray(8, 11);
    const end = d.offset + d.size;
    if (end > fileSize) {
      throw fail(
        'ERR_SIF_TRUNCATED',
        `object ${d.id} (${shortName(d.name)}) occupies bytes ${d.offset}-${end} ` +
          `but the file is only ${fileSize} bytes long`,
        { id: d.id, name: d.name, offset: d.offset, size: d.size, end, fileSize },
      );
    }
    if (d.offset < dataOffset || end > dataOffset + dataSize) {
      warnings.push(
        `object ${d.id} (bytes ${d.offset}-${end}) lies outside the data section ` +
          `(bytes ${dataOffset}-${dataOffset + dataSize})`,
      );
    }
    for (const t of ['createdAt', 'modifiedAt', 'uid', 'gid'] as const) {
      if (rd[t] <= -TWO_53 || rd[t] >= TWO_53) {
        warnings.push(`object ${d.id} ${t} ${rd[t]} is beyond ±2^53 and is shown rounded`);
      }
    }
    descriptors.push(d);
  }

  if (descriptors.length !== total - free) {
    warnings.push(
      `header says ${total - free} descriptors are used (total ${total} − free ${free}) ` +
        `but ${descriptors.length} slots are marked used`,
    );
  }
  const prim = descriptors.filter((d) => d.partition?.partType === PartPrimSys);
  if (prim.length > 1) {
    const ids = prim.map((d) => d.id).join(', ');
    warnings.push(`${prim.length} primary system partitions (objects ${ids}); at most one is allowed`);
  } else if (prim.length === 1) {
    const p = prim[0]!;
    if (!primArch!.equals(rh.arch)) {
      warnings.push(`header architecture ${quote(rh.arch)} differs from primary partition ${p.id}'s architecture ${quote(primArch!)}`);
    }
  }

  return { header: rh, headerBytes: hb, descriptors, warnings, size: fileSize, slots };
}

/** The used descriptors whose partition type is PrimSys (normally zero or one). */
export function findPrimaryPartitions(img: SifImage): SifDescriptor[] {
  return img.descriptors.filter((d) => d.partition?.partType === PartPrimSys);
}

/**
 * Reads an object's bytes, never outside [offset, offset + size). `range` picks a part of the
 * object (start relative to the object; length defaults to the rest).
 */
export async function descriptorData(
  source: ByteSource,
  d: Pick<SifDescriptor, 'id' | 'name' | 'offset' | 'size'>,
  range: { start?: number; length?: number } = {},
): Promise<Buffer> {
  const start = range.start ?? 0;
  if (!Number.isSafeInteger(start) || start < 0 || start > d.size) {
    throw outOfRange('range.start', `>= 0 and <= ${d.size}`, start);
  }
  const length = range.length ?? d.size - start;
  if (!Number.isSafeInteger(length) || length < 0 || length > d.size - start) {
    throw outOfRange('range.length', `>= 0 and <= ${d.size - start}`, length);
  }
  const truncated = () =>
    new ImgmountError(
      'ERR_SIF_TRUNCATED',
      `object ${d.id} (${shortName(d.name)}) occupies bytes ${d.offset}-${d.offset + d.size} ` +
        `but the source is only ${source.size} bytes long`,
      { details: { id: d.id, name: d.name, offset: d.offset, size: d.size, fileSize: source.size } },
    );
  if (d.offset + d.size > source.size) throw truncated();
  if (length === 0) return Buffer.alloc(0);
  const buf = await source.read(d.offset + start, length);
  if (buf.length < length) throw truncated();
  return buf;
}

/** Bytes as a quoted string, with non-printables escaped (for messages). */
function quote(b: Buffer): string {
  let s = '';
  for (const c of b) {
    if (c >= 0x20 && c < 0x7f && c !== 0x22 && c !== 0x5c) s += String.fromCharCode(c);
    else s += c === 0 ? '\\0' : `\\x${c.toString(16).padStart(2, '0')}`;
  }
  return `"${s}"`;
}

/** An object name for messages: JSON-quoted, cut at 64 characters. */
function shortName(name: string): string {
  return JSON.stringify(name.length > 64 ? name.slice(0, 64) + '…' : name);
}

function hex(b: Buffer): string {
  return Array.from(b, (x) => x.toString(16).padStart(2, '0')).join(' ');
}
