// Positional reads over an image, whatever holds it: an open fd, a FileHandle or a Buffer.
//
// Detection and the SIF reader only ever ask for "these bytes at this offset"; they never
// move a file position, so one fd can serve concurrent readers.

import * as fs from 'node:fs';

export interface ByteSource {
  /** Total length in bytes (file size, or block device size). */
  readonly size: number;
  /**
   * Reads up to `length` bytes at `offset`. Returns fewer only at end of data: a short
   * read from the OS is retried until the range is complete or EOF is reached.
   */
  read(offset: number, length: number): Promise<Buffer>;
  /**
   * Optional hint: these [offset, length] ranges will be read next. A source over an fd reads
   * them all in one hop, so that the reads that follow cost none.
   */
  prefetch?(ranges: ReadonlyArray<readonly [number, number]>): Promise<void>;
}

/** A ByteSource over memory (tests, in-memory SIF building). */
export function bufferSource(buf: Buffer): ByteSource {
  return {
    size: buf.length,
    async read(offset, length) {
      if (offset >= buf.length) return Buffer.alloc(0);
      return buf.subarray(offset, Math.min(buf.length, offset + length));
    },
  };
}

/** A ByteSource over an open file descriptor, reading with pread (fs.read with a position). */
export function fdSource(fd: number, size: number): ByteSource {
  return {
    size,
    read: (offset, length) => preadFully(fd, offset, Math.max(0, Math.min(length, size - offset))),
  };
}

/** pread until `length` bytes or EOF; never trusts a single read to be complete. */
export async function preadFully(fd: number, offset: number, length: number): Promise<Buffer> {
  const buf = Buffer.allocUnsafe(length);
  let done = 0;
  while (done < length) {
    const { bytesRead } = await readAt(fd, buf, done, length - done, offset + done);
    if (bytesRead === 0) break;
    done += bytesRead;
  }
  return done === length ? buf : buf.subarray(0, done);
}

function readAt(fd: number, buf: Buffer, off: number, len: number, pos: number): Promise<{ bytesRead: number }> {
  return new Promise((resolve, reject) => {
    fs.read(fd, buf, off, len, pos, (err, bytesRead) => (err ? reject(err) : resolve({ bytesRead })));
  });
}
