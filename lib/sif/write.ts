// Creating and modifying SIF images with the same on-disk result as sylabs/sif v2 (the writer
// goldens are reproduced byte for byte; see sif-format.md §9). State lives in memory (header +
// table); every change writes object data first, then the whole table, then the header.

import { createHash, randomUUID } from 'node:crypto';
import * as fs from 'node:fs';
import { ImgmountError, fromNodeError, invalidArgType, invalidArgValue, throwIfAborted } from '../errors';
import {
  ARCH_UNKNOWN_CODE,
  DEFAULT_DESCRIPTORS_OFFSET,
  DEFAULT_DESCRIPTOR_CAPACITY,
  DESCRIPTOR_SIZE,
  DataOCIBlob,
  DataOCIRootIndex,
  DataPartition,
  EXTRA_SIZE,
  HEADER_SIZE,
  LAUNCH_SCRIPT_SIZE,
  MAGIC,
  MAX_DESCRIPTORS,
  PartPrimSys,
  PartSystem,
  VERSION_01,
  dataTypeName,
  partTypeName,
} from './constants';
import {
  GO_ZERO_TIME_BIG,
  decodeRawDescriptor,
  descriptorView,
  encodeRawDescriptor,
  encodeRawHeader,
  headerView,
  timeToRaw,
} from './codec';
import type { RawDescriptor, RawHeader } from './codec';
import { nextAligned, ociDigestExtra, preparedDescriptor, prepareObject, writePartitionExtra } from './object-input';
import type { PreparedObject, SifObjectInput } from './object-input';
import { loadSifTable } from './read';
import { resolveTarget, targetSource } from './target';
import type { SifTargetLike, SifWriteTarget } from './target';
import type { SifDescriptor, SifHeader } from './types';

export interface CreateSifOptions {
  /** Checked before each object is written: an abort removes a file created at a path. */
  signal?: AbortSignal;
  /** Launch script, shorter than 32 bytes (e.g. "#!/usr/bin/env run-singularity\n"). Default empty. */
  launchScript?: string | Uint8Array;
  /** Image UUID (text or 16 bytes); null = the nil UUID. Default random (nil when deterministic). */
  id?: string | Uint8Array | null;
  /** Creation time in Unix seconds; null = Go zero time. Default now (Go zero when deterministic). */
  time?: number | null;
  /** Nil UUID and Go-zero times, so equal inputs give equal bytes. `id`/`time` still override. */
  deterministic?: boolean;
  /** Descriptor slots (default 48). */
  capacity?: number;
  /** Objects written at creation, in order (IDs 1, 2, …). */
  objects?: SifObjectInput[];
}

export interface SifChangeOptions {
  /**
   * Modification time in Unix seconds; null = Go zero time. Default: now, or the Go zero time if
   * the image is deterministic (nil UUID and both header times unset), as the Go library does.
   */
  time?: number | null;
}

export interface DeleteSifObjectOptions extends SifChangeOptions {
  /** Overwrite the object's bytes with zeros. */
  zero?: boolean;
  /** Shrink DataSize to the end of the last remaining object and truncate the file there. */
  compact?: boolean;
}

const UUID_RE = /^[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}$/i;
const OCI_DIGEST_RE = /^sha256:[0-9a-f]{64}$/;
const ZERO_CHUNK = 1 << 20;

function nowSeconds(): number {
  return Math.floor(Date.now() / 1000);
}

function checkTime(name: string, t: unknown): number | null | undefined {
  if (t === undefined || t === null) return t;
  if (typeof t !== 'number' || !Number.isSafeInteger(t)) {
    throw invalidArgType(name, 'a safe integer (Unix seconds) or null', t);
  }
  return t;
}

function checkId(id: unknown): number {
  if (typeof id !== 'number' || !Number.isInteger(id) || id < 1 || id > 0xffffffff) {
    throw invalidArgValue('id', id, 'must be an object ID (an integer in 1..4294967295)');
  }
  return id;
}

function noObject(id: number): ImgmountError {
  return new ImgmountError('ERR_SIF_NO_OBJECT', `no object with ID ${id} in the image`, { details: { id } });
}

function writeError(message: string, details?: Record<string, unknown>): ImgmountError {
  return new ImgmountError('ERR_SIF_WRITE', message, details === undefined ? {} : { details });
}

interface Slot {
  /** Bytes written back for this slot (kept verbatim for unused slots, as Go does). */
  bytes: Buffer;
  /** Decoded fields if the slot is in use. */
  d: RawDescriptor | null;
}

/** An open SIF image being written. Operations run one at a time, in call order. */
export class SifWriter implements AsyncDisposable {
  readonly #target: SifWriteTarget;
  readonly #close: () => Promise<void>;
  readonly #header: RawHeader;
  readonly #slots: Slot[];
  #queue: Promise<unknown> = Promise.resolve();
  #closing: Promise<void> | undefined;
  #closed = false;
  /** Slots replaced by the running operation, to restore if it fails. */
  #undo: Array<[number, Slot]> = [];
  /** Path, when the writer opened the file itself. */
  readonly path: string | undefined;

  private constructor(target: SifWriteTarget, close: () => Promise<void>, header: RawHeader, slots: Slot[], path?: string) {
    this.#target = target;
    this.#close = close;
    this.#header = header;
    this.#slots = slots;
    this.path = path;
  }

  /** See createSif. */
  static async create(target: SifTargetLike, options: CreateSifOptions = {}): Promise<SifWriter> {
    const { header, objects, time } = prepareCreate(options);
    throwIfAborted(options.signal);
    const slots: Slot[] = Array.from({ length: Number(header.descriptorsTotal) }, () => ({
      bytes: Buffer.alloc(DESCRIPTOR_SIZE),
      d: null,
    }));
    const r = await resolveTarget(target, 'create').catch((err) => {
      throw fromNodeError(err, 'creating SIF image');
    });
    const w = new SifWriter(r.target, r.close, header, slots, r.path);
    try {
      await w.#run(async () => {
        await w.#io(() => w.#target.truncate(0));
        for (let i = 0; i < objects.length; i++) {
          throwIfAborted(options.signal);
          await w.#writeObject(i, objects[i]!, time);
        }
        throwIfAborted(options.signal);
        await w.#writeTable();
        await w.#writeHeader();
      });
    } catch (err) {
      await w.close().catch(() => undefined);
      // Like the Go library, do not leave a half-written file behind at a path we opened.
      if (r.path !== undefined) await fs.promises.rm(r.path, { force: true }).catch(() => undefined);
      throw err;
    }
    return w;
  }

  /** See openSifWriter. */
  static async open(target: SifTargetLike, options: { signal?: AbortSignal } = {}): Promise<SifWriter> {
    throwIfAborted(options.signal);
    const r = await resolveTarget(target, 'open').catch((err) => {
      throw fromNodeError(err, 'opening SIF image');
    });
    try {
      const source = await targetSource(r.target);
      const loaded = await loadSifTable(source, { ...(r.path === undefined ? {} : { path: r.path }), ...(options.signal ? { signal: options.signal } : {}) });
      const slots: Slot[] = loaded.slots.map((b) => {
        // Used slots are re-encoded (as Go does: a "used" byte of 2 is written back as 1);
        // unused ones are kept verbatim.
        if (b[4] === 0) return { bytes: Buffer.from(b), d: null };
        const d = decodeRawDescriptor(b);
        return { bytes: encodeRawDescriptor(d), d };
      });
      return new SifWriter(r.target, r.close, loaded.header, slots, r.path);
    } catch (err) {
      await r.close().catch(() => undefined);
      throw err;
    }
  }

  /** The header as it is now. */
  get header(): SifHeader {
    return headerView(this.#header);
  }

  /** The used descriptors as they are now, in slot order. */
  get descriptors(): SifDescriptor[] {
    const out: SifDescriptor[] = [];
    this.#slots.forEach((s, i) => {
      if (s.d) out.push(descriptorView(s.d, i, s.bytes));
    });
    return out;
  }

  /** Adds an object in the first free slot (ID = slot + 1), after the current end of the data. */
  async addObject(input: SifObjectInput, options: SifChangeOptions = {}): Promise<SifDescriptor> {
    const p = prepareObject(input);
    const t0 = this.#checkOptions(options);
    return this.#run(async () => {
      const t = this.#time(t0);
      const slot = this.#slots.findIndex((s) => !s.d);
      const d = await this.#writeObject(slot < 0 ? this.#slots.length : slot, p, t);
      await this.#writeTable();
      this.#header.modifiedAt = timeToRaw(t);
      await this.#writeHeader();
      return d;
    });
  }

  /** Deletes object `id`. */
  async deleteObject(id: number, options: DeleteSifObjectOptions = {}): Promise<void> {
    checkId(id);
    await this.#delete((d) => d.id === id, options, id);
  }

  /** Deletes every object `select` picks (at least one, else ERR_SIF_NO_OBJECT); returns how many. */
  async deleteObjects(select: (d: SifDescriptor) => boolean, options: DeleteSifObjectOptions = {}): Promise<number> {
    if (typeof select !== 'function') throw invalidArgType('select', 'a function', select);
    return this.#delete(select, options);
  }

  #delete(select: (d: SifDescriptor) => boolean, options: DeleteSifObjectOptions, forId?: number): Promise<number> {
    const t0 = this.#checkOptions(options);
    return this.#run(async () => {
      const t = this.#time(t0);
      // Select first, so that a throwing selector changes nothing.
      const picked: number[] = [];
      this.#slots.forEach((s, i) => {
        if (s.d && select(descriptorView(s.d, i, s.bytes))) picked.push(i);
      });
      const n = picked.length;
      for (const i of picked) {
        const d = this.#slots[i]!.d!;
        if (options.zero) await this.#zero(Number(d.offset), Number(d.size));
        this.#header.descriptorsFree += 1n;
        // Without a primary partition the image no longer depends on an architecture.
        if (isPartitionOfType(d, PartPrimSys)) this.#header.arch = Buffer.from(ARCH_UNKNOWN_CODE + '\0', 'latin1');
        this.#replaceSlot(i, { bytes: Buffer.alloc(DESCRIPTOR_SIZE), d: null });
      }
      if (n === 0) {
        throw forId === undefined
          ? new ImgmountError('ERR_SIF_NO_OBJECT', 'no object in the image matches the selection')
          : noObject(forId);
      }
      this.#header.modifiedAt = timeToRaw(t);
      const end = this.#dataEnd();
      if (options.compact) this.#header.dataSize = end - this.#header.dataOffset;
      await this.#writeTable();
      await this.#writeHeader();
      // Truncate last (Go does it first; same bytes), so no table on disk ever points past EOF.
      // Never into the table or header, even if DataOffset claims so.
      const keep = Number(this.#header.descriptorsOffset) + this.#slots.length * DESCRIPTOR_SIZE;
      if (options.compact) await this.#io(() => this.#target.truncate(Math.max(Number(end), keep, HEADER_SIZE)));
      return n;
    });
  }

  /**
   * Makes System partition `id` the primary one: the old primary becomes System, and the header
   * arch becomes the partition's. A partition that already is primary is left alone.
   */
  async setPrimaryPartition(id: number, options: SifChangeOptions = {}): Promise<SifDescriptor> {
    checkId(id);
    const t0 = this.#checkOptions(options);
    return this.#run(async () => {
      const t = this.#time(t0);
      const i = this.#find(id);
      const d = this.#slots[i]!.d!;
      if (d.dataType !== DataPartition) {
        throw writeError(`object ${id} is ${dataTypeName(d.dataType)} data, not a partition`, { id, dataType: d.dataType });
      }
      const partType = d.extra.readInt32LE(4);
      if (partType === PartPrimSys) return descriptorView(d, i);
      if (partType !== PartSystem) {
        throw writeError(`object ${id} is a ${partTypeName(partType)} partition, not a System one`, { id, partType });
      }
      const prims = this.#slots.map((s, j) => [s, j] as const).filter(([s]) => s.d && isPartitionOfType(s.d, PartPrimSys));
      if (prims.length > 1) {
        throw writeError(`image has ${prims.length} primary partitions; cannot tell which to demote`, {
          ids: prims.map(([s]) => s.d!.id),
        });
      }
      const mt = timeToRaw(t);
      for (const [s, j] of prims) this.#setSlot(j, withPartType(s.d!, PartSystem, mt));
      const nd = withPartType(d, PartPrimSys, mt);
      this.#setSlot(i, nd);
      await this.#writeTable();
      this.#header.arch = Buffer.from(nd.extra.subarray(8, 11));
      this.#header.modifiedAt = mt;
      await this.#writeHeader();
      return descriptorView(nd, i);
    });
  }

  /** Replaces object `id`'s Extra field with `extra` (≤ 384 bytes, zero-padded). */
  async setMetadata(id: number, extra: Uint8Array, options: SifChangeOptions = {}): Promise<SifDescriptor> {
    checkId(id);
    if (!(extra instanceof Uint8Array)) throw invalidArgType('extra', 'a Uint8Array', extra);
    if (extra.length > EXTRA_SIZE) throw invalidArgValue('extra', extra, `must be at most ${EXTRA_SIZE} bytes`);
    const t0 = this.#checkOptions(options);
    const padded = Buffer.concat([extra, Buffer.alloc(EXTRA_SIZE - extra.length)]);
    return this.#run(() => this.#setExtra(id, padded, this.#time(t0)));
  }

  /** Sets the digest ("sha256:<64 lowercase hex>") of OCI.RootIndex / OCI.Blob object `id`. */
  async setOCIBlobDigest(id: number, digest: string, options: SifChangeOptions = {}): Promise<SifDescriptor> {
    checkId(id);
    if (typeof digest !== 'string' || !OCI_DIGEST_RE.test(digest)) {
      throw invalidArgValue('digest', digest, 'must be "sha256:" followed by 64 lowercase hex digits');
    }
    const t0 = this.#checkOptions(options);
    return this.#run(async () => {
      const d = this.#slots[this.#find(id)]!.d!;
      if (d.dataType !== DataOCIRootIndex && d.dataType !== DataOCIBlob) {
        throw writeError(`object ${id} is ${dataTypeName(d.dataType)} data, not an OCI.RootIndex or OCI.Blob`, {
          id,
          dataType: d.dataType,
        });
      }
      return this.#setExtra(id, ociDigestExtra(digest), this.#time(t0));
    });
  }

  /** True once close() was called. */
  get closed(): boolean {
    return this.#closed;
  }

  /** Waits for pending operations and closes the file if this writer opened it. Idempotent: every call shares the one close. */
  close(): Promise<void> {
    this.#closed = true;
    this.#closing ??= this.#queue.catch(() => undefined).then(() => this.#close());
    return this.#closing;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  // ---- internals ----

  /**
   * Queues `fn` after the previous operations. If it fails, the in-memory header and table go
   * back to what they were; on disk the old table and header are still intact, because they are
   * written only after the data.
   */
  #run<T>(fn: () => Promise<T>): Promise<T> {
    if (this.#closed) return Promise.reject(writeError('the SIF writer is closed'));
    const guarded = async (): Promise<T> => {
      const header = { ...this.#header };
      this.#undo = [];
      try {
        return await fn();
      } catch (err) {
        for (const [i, s] of this.#undo.reverse()) this.#slots[i] = s;
        Object.assign(this.#header, header);
        throw err;
      } finally {
        this.#undo = [];
      }
    };
    const p = this.#queue.then(guarded, guarded);
    this.#queue = p.catch(() => undefined);
    return p;
  }

  #checkOptions(options: SifChangeOptions): number | null | undefined {
    if (typeof options !== 'object' || options === null) throw invalidArgType('options', 'an object', options);
    return checkTime('options.time', options.time);
  }

  /** The operation time: given, else Go zero for deterministic images, else now (decided when the operation runs). */
  #time(t: number | null | undefined): number | null {
    if (t !== undefined) return t;
    const h = this.#header;
    const nilId = h.uuid.every((b) => b === 0);
    return nilId && h.createdAt === GO_ZERO_TIME_BIG && h.modifiedAt === GO_ZERO_TIME_BIG ? null : nowSeconds();
  }

  #find(id: number): number {
    const i = this.#slots.findIndex((s) => s.d?.id === id);
    if (i < 0) throw noObject(id);
    return i;
  }

  /** Replaces slot `i` (descriptors are never changed in place, so the undo log stays valid). */
  #replaceSlot(i: number, s: Slot): void {
    this.#undo.push([i, this.#slots[i]!]);
    this.#slots[i] = s;
  }

  #setSlot(i: number, d: RawDescriptor): void {
    this.#replaceSlot(i, { bytes: encodeRawDescriptor(d), d });
  }

  async #setExtra(id: number, extra: Buffer, t: number | null): Promise<SifDescriptor> {
    const i = this.#find(id);
    const d = { ...this.#slots[i]!.d!, extra, modifiedAt: timeToRaw(t) };
    this.#setSlot(i, d);
    await this.#writeTable();
    this.#header.modifiedAt = timeToRaw(t);
    await this.#writeHeader();
    return descriptorView(d, i);
  }

  /** End of the data section: max(DataOffset, end of every used object). */
  #dataEnd(): bigint {
    let end = this.#header.dataOffset;
    for (const s of this.#slots) if (s.d && s.d.offset + s.d.size > end) end = s.d.offset + s.d.size;
    return end;
  }

  /** Writes object `p` into slot `i` and updates the header counts (not yet written). */
  async #writeObject(i: number, p: PreparedObject, t: number | null): Promise<SifDescriptor> {
    if (i >= this.#slots.length) {
      throw writeError(`insufficient descriptor capacity: all ${this.#slots.length} descriptor slots are in use`, {
        capacity: this.#slots.length,
      });
    }
    if (i >= 0xffffffff) throw writeError(`object ID ${i + 1} would overflow uint32`);
    if (p.partType === PartPrimSys) {
      const other = this.#slots.find((s) => s.d && isPartitionOfType(s.d, PartPrimSys));
      if (other) throw writeError(`image already contains a primary partition (object ${other.d!.id})`, { id: other.d!.id });
    }
    const unaligned = this.#dataEnd();
    const offset = nextAligned(unaligned, p.alignment);
    if (offset > BigInt(Number.MAX_SAFE_INTEGER)) throw writeError(`object offset ${offset} is beyond 2^53`);

    const hash = p.extra === null ? createHash('sha256') : null;
    let size = 0;
    const at = Number(offset);
    if (p.data instanceof Uint8Array) {
      if (p.data.length > 0) await this.#io(() => this.#target.write(at, p.data as Uint8Array));
      hash?.update(p.data);
      size = p.data.length;
    } else {
      for await (const chunk of p.data) {
        if (!(chunk instanceof Uint8Array)) throw invalidArgType('input.data chunk', 'a Uint8Array', chunk);
        if (chunk.length === 0) continue;
        await this.#io(() => this.#target.write(at + size, chunk));
        hash?.update(chunk);
        size += chunk.length;
      }
    }
    // An empty object after alignment padding must still lie inside the file.
    if (size === 0 && (await this.#io(() => this.#target.size())) < at) await this.#io(() => this.#target.truncate(at));

    const extra = hash ? ociDigestExtra('sha256:' + hash.digest('hex')) : p.extra!;
    const d = preparedDescriptor(p, t, extra);
    d.used = true;
    d.id = i + 1;
    d.offset = offset;
    d.size = BigInt(size);
    d.sizeWithPadding = offset - unaligned + d.size;
    this.#setSlot(i, d);
    if (p.partType === PartPrimSys && p.arch) this.#header.arch = Buffer.from(p.arch);
    this.#header.descriptorsFree -= 1n;
    this.#header.dataSize = unaligned - this.#header.dataOffset + d.sizeWithPadding;
    return descriptorView(d, i);
  }

  async #zero(offset: number, size: number): Promise<void> {
    const chunk = Buffer.alloc(Math.min(size, ZERO_CHUNK));
    for (let done = 0; done < size; done += chunk.length) {
      const n = Math.min(chunk.length, size - done);
      await this.#io(() => this.#target.write(offset + done, chunk.subarray(0, n)));
    }
  }

  async #writeTable(): Promise<void> {
    const off = Number(this.#header.descriptorsOffset);
    const table = Buffer.concat(this.#slots.map((s) => s.bytes));
    if (table.length > 0) await this.#io(() => this.#target.write(off, table));
    // An empty table still reserves the space up to its offset (as Go's writer leaves it).
    const end = off + table.length;
    if ((await this.#io(() => this.#target.size())) < end) await this.#io(() => this.#target.truncate(end));
  }

  async #writeHeader(): Promise<void> {
    const b = encodeRawHeader(this.#header);
    await this.#io(() => this.#target.write(0, b));
  }

  async #io<T>(fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      throw fromNodeError(err, this.path === undefined ? 'writing SIF image' : `writing SIF image ${this.path}`);
    }
  }
}

/** A copy of partition descriptor `d` with partition type `pt` and modification time `mt`. */
function withPartType(d: RawDescriptor, pt: number, mt: bigint): RawDescriptor {
  const extra = Buffer.alloc(EXTRA_SIZE);
  // Re-marshalled as Go does: the 11 partition bytes, the rest zero.
  writePartitionExtra(extra, d.extra.readInt32LE(0), pt, d.extra.subarray(8, 11));
  return { ...d, extra, modifiedAt: mt };
}

/** Checks createSif's options and builds the new header; nothing is written yet. */
function prepareCreate(options: CreateSifOptions): { header: RawHeader; objects: PreparedObject[]; time: number | null } {
  if (typeof options !== 'object' || options === null) throw invalidArgType('options', 'an object', options);
  const launch = Buffer.alloc(LAUNCH_SCRIPT_SIZE);
  if (options.launchScript !== undefined) {
    const ls = typeof options.launchScript === 'string' ? Buffer.from(options.launchScript, 'utf8') : options.launchScript;
    if (!(ls instanceof Uint8Array)) throw invalidArgType('options.launchScript', 'a string or Uint8Array', ls);
    // At least one NUL must follow the script.
    if (ls.length >= LAUNCH_SCRIPT_SIZE) {
      throw invalidArgValue('options.launchScript', options.launchScript, `must be shorter than ${LAUNCH_SCRIPT_SIZE} bytes`);
    }
    launch.set(ls);
  }
  const deterministic = options.deterministic === true;
  const uuid =
    options.id !== undefined ? parseUuid(options.id) : deterministic ? Buffer.alloc(16) : parseUuid(randomUUID());
  const t0 = checkTime('options.time', options.time);
  const time = t0 !== undefined ? t0 : deterministic ? null : nowSeconds();

  const capacity = options.capacity ?? DEFAULT_DESCRIPTOR_CAPACITY;
  if (typeof capacity !== 'number' || !Number.isSafeInteger(capacity) || capacity < 0) {
    throw invalidArgType('options.capacity', 'a non-negative integer', capacity);
  }
  // IDs are uint32 and derived from the slot index.
  if (capacity >= 0xffffffff) {
    throw writeError(`descriptor capacity ${capacity} not supported: object IDs are 32-bit`, { capacity });
  }
  if (capacity > MAX_DESCRIPTORS) {
    throw writeError(`descriptor capacity ${capacity} not supported: loadSif accepts at most ${MAX_DESCRIPTORS}`, {
      capacity,
    });
  }

  const inputs = options.objects ?? [];
  if (!Array.isArray(inputs)) throw invalidArgType('options.objects', 'an array', inputs);
  const objects = inputs.map((o, i) => prepareObject(o, `options.objects[${i}]`));
  if (objects.length > capacity) {
    throw writeError(`insufficient descriptor capacity: ${objects.length} objects for ${capacity} descriptor slots`, {
      capacity,
      objects: objects.length,
    });
  }
  if (objects.filter((o) => o.partType === PartPrimSys).length > 1) {
    throw writeError('image already contains a primary partition: more than one PrimSys partition given');
  }

  const tableSize = BigInt(capacity * DESCRIPTOR_SIZE);
  const header: RawHeader = {
    launchScript: launch,
    magic: Buffer.from(MAGIC),
    version: Buffer.from(VERSION_01),
    arch: Buffer.from(ARCH_UNKNOWN_CODE + '\0', 'latin1'),
    uuid,
    createdAt: timeToRaw(time),
    modifiedAt: timeToRaw(time),
    descriptorsFree: BigInt(capacity),
    descriptorsTotal: BigInt(capacity),
    descriptorsOffset: BigInt(DEFAULT_DESCRIPTORS_OFFSET),
    descriptorsSize: tableSize,
    dataOffset: BigInt(DEFAULT_DESCRIPTORS_OFFSET) + tableSize,
    dataSize: 0n,
  };
  return { header, objects, time };
}

function isPartitionOfType(d: RawDescriptor, pt: number): boolean {
  return d.dataType === DataPartition && d.extra.readInt32LE(4) === pt;
}

function parseUuid(id: unknown): Buffer {
  if (id === null) return Buffer.alloc(16);
  if (typeof id === 'string' && UUID_RE.test(id)) return Buffer.from(id.replace(/-/g, ''), 'hex');
  if (id instanceof Uint8Array && id.length === 16) return Buffer.from(id);
  throw invalidArgValue('options.id', id, 'must be a UUID string, 16 bytes, or null');
}

/**
 * Creates a new image in `target`: a path (created with mode 0755, or truncated), an fd, a
 * FileHandle, or a SifWriteTarget such as `new MemoryTarget()`. Whatever the target held is
 * truncated. All arguments are checked before anything is opened or written; if writing fails,
 * a path is removed.
 */
export function createSif(target: SifTargetLike, options: CreateSifOptions = {}): Promise<SifWriter> {
  return SifWriter.create(target, options);
}

/** Opens an existing image for modification (a path is opened read-write, never created). */
export function openSifWriter(target: SifTargetLike, options: { signal?: AbortSignal } = {}): Promise<SifWriter> {
  return SifWriter.open(target, options);
}
