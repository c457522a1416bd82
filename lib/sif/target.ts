// Where the SIF writer puts bytes: a file (path, fd or FileHandle) or memory. Positional I/O
// only, like ByteSource; writes past the end extend with zeros, as files and Go's sif.Buffer do.

import * as fs from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import { invalidArgType } from '../errors';
import type { ByteSource } from '../io/byte-source';

export interface SifWriteTarget {
  size(): Promise<number>;
  /** Up to `length` bytes at `offset`; fewer only at the end. */
  read(offset: number, length: number): Promise<Buffer>;
  write(offset: number, data: Uint8Array): Promise<void>;
  /** Sets the length, cutting or zero-extending. */
  truncate(length: number): Promise<void>;
}

/** A growable in-memory image (tests, building an image before shipping it elsewhere). */
export class MemoryTarget implements SifWriteTarget {
  #buf: Buffer;
  #len: number;

  constructor(initial?: Uint8Array) {
    this.#buf = Buffer.alloc(Math.max(4096, initial?.length ?? 0));
    this.#len = 0;
    if (initial) {
      this.#buf.set(initial);
      this.#len = initial.length;
    }
  }

  /** A copy of the current contents. */
  contents(): Buffer {
    return Buffer.from(this.#buf.subarray(0, this.#len));
  }

  /** A ByteSource over the current contents (a snapshot). */
  source(): ByteSource {
    const snap = this.contents();
    return {
      size: snap.length,
      read: async (offset, length) => snap.subarray(Math.min(offset, snap.length), Math.min(snap.length, offset + length)),
    };
  }

  async size(): Promise<number> {
    return this.#len;
  }

  async read(offset: number, length: number): Promise<Buffer> {
    const end = Math.min(this.#len, offset + length);
    return Buffer.from(this.#buf.subarray(Math.min(offset, end), end));
  }

  async write(offset: number, data: Uint8Array): Promise<void> {
    const end = offset + data.length;
    this.#ensure(end);
    if (offset > this.#len) this.#buf.fill(0, this.#len, offset);
    this.#buf.set(data, offset);
    if (end > this.#len) this.#len = end;
  }

  async truncate(length: number): Promise<void> {
    this.#ensure(length);
    if (length > this.#len) this.#buf.fill(0, this.#len, length);
    this.#len = length;
  }

  #ensure(n: number): void {
    if (n <= this.#buf.length) return;
    const next = Buffer.alloc(Math.max(n, this.#buf.length * 2));
    this.#buf.copy(next, 0, 0, this.#len);
    this.#buf = next;
  }
}

/** A target over an open file descriptor (not closed by the writer). */
export function fdTarget(fd: number): SifWriteTarget {
  return {
    size: () => new Promise((res, rej) => fs.fstat(fd, (e, st) => (e ? rej(e) : res(st.size)))),
    async read(offset, length) {
      const buf = Buffer.alloc(length);
      let done = 0;
      while (done < length) {
        const n = await new Promise<number>((res, rej) =>
          fs.read(fd, buf, done, length - done, offset + done, (e, r) => (e ? rej(e) : res(r))),
        );
        if (n === 0) break;
        done += n;
      }
      return buf.subarray(0, done);
    },
    async write(offset, data) {
      let done = 0;
      while (done < data.length) {
        done += await new Promise<number>((res, rej) =>
          fs.write(fd, data, done, data.length - done, offset + done, (e, w) => (e ? rej(e) : res(w))),
        );
      }
    },
    truncate: (length) => new Promise((res, rej) => fs.ftruncate(fd, length, (e) => (e ? rej(e) : res()))),
  };
}

/** A target over a FileHandle (not closed by the writer). */
export function fileHandleTarget(fh: FileHandle): SifWriteTarget {
  return {
    size: async () => (await fh.stat()).size,
    async read(offset, length) {
      const buf = Buffer.alloc(length);
      let done = 0;
      while (done < length) {
        const { bytesRead } = await fh.read(buf, done, length - done, offset + done);
        if (bytesRead === 0) break;
        done += bytesRead;
      }
      return buf.subarray(0, done);
    },
    async write(offset, data) {
      let done = 0;
      while (done < data.length) {
        const { bytesWritten } = await fh.write(data, done, data.length - done, offset + done);
        done += bytesWritten;
      }
    },
    truncate: (length) => fh.truncate(length),
  };
}

/** Anything createSif / openSifWriter accept as a place to write. */
export type SifTargetLike = string | number | FileHandle | SifWriteTarget;

export function isWriteTarget(x: unknown): x is SifWriteTarget {
  const t = x as SifWriteTarget;
  return (
    typeof t === 'object' &&
    t !== null &&
    typeof t.size === 'function' &&
    typeof t.read === 'function' &&
    typeof t.write === 'function' &&
    typeof t.truncate === 'function'
  );
}

/**
 * Resolves a target. Paths are opened here (mode 0755 when created, as the Go library does, so
 * the launch script can run) and closed by the returned `close`.
 */
export async function resolveTarget(
  t: SifTargetLike,
  mode: 'create' | 'open',
): Promise<{ target: SifWriteTarget; close: () => Promise<void>; path?: string }> {
  if (typeof t === 'string') {
    const fh = await fs.promises.open(t, mode === 'create' ? 'w+' : 'r+', 0o755);
    return { target: fileHandleTarget(fh), close: () => fh.close(), path: t };
  }
  if (typeof t === 'number') {
    if (!Number.isInteger(t) || t < 0) throw invalidArgType('target', 'a path, fd, FileHandle or SifWriteTarget', t);
    return { target: fdTarget(t), close: async () => {} };
  }
  if (isWriteTarget(t)) return { target: t, close: async () => {} };
  const fh = t as FileHandle;
  if (typeof t === 'object' && t !== null && typeof fh.fd === 'number' && typeof fh.stat === 'function') {
    return { target: fileHandleTarget(t as FileHandle), close: async () => {} };
  }
  throw invalidArgType('target', 'a path, fd, FileHandle or SifWriteTarget', t);
}

/** A ByteSource view of a target (for loading an image through it). */
export async function targetSource(t: SifWriteTarget): Promise<ByteSource> {
  const size = await t.size();
  return { size, read: (offset, length) => t.read(offset, Math.max(0, Math.min(length, size - offset))) };
}
