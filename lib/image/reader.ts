// Readers over one partition or section: Node Readable streams bounded to the range, using
// positional reads on the image's fd (never its file position), so several readers and a
// loop device can share one fd.

import * as fs from 'node:fs';
import { Readable } from 'node:stream';
import { ImgmountError, argumentError, invalidArgType, invalidArgValue } from '../errors';
import { SANDBOX } from './constants';
import type { Image } from './image';
import type { Section } from './section';

export interface RangeReader extends Readable {
  /** The partition or section being read. */
  readonly range: Section;
}

function pick(list: readonly Section[], name: string, index: number, what: 'partition' | 'section'): Section {
  if (typeof name !== 'string') throw invalidArgType('name', 'of type string', name);
  if (!Number.isInteger(index)) throw invalidArgType('index', 'an integer', index);
  if (name === '' && index < 0) throw invalidArgValue('name/index', `${name}/${index}`, 'must give a name or a non-negative index');
  const code = what === 'partition' ? 'ERR_NO_PARTITION' : 'ERR_NO_SECTION';
  const plural = `${what}s`;
  if (index >= 0) {
    const entry = list[index];
    if (!entry) {
      throw new ImgmountError(code, `index ${index} too large, image contains ${list.length} ${list.length === 1 ? what : plural}`);
    }
    // Both given: both must hold (Apptainer matched either, so a wrong name passed unnoticed).
    if (name !== '' && entry.name !== name) {
      throw new ImgmountError(code, `${what} ${index} is named "${entry.name}", not "${name}"`);
    }
    return entry;
  }
  // By name only; an empty name never matches (Apptainer's "" matched unnamed entries).
  const entry = list.find((s) => s.name === name);
  if (!entry) throw new ImgmountError(code, `no ${what} named "${name}" found`);
  return entry;
}

const CHUNK = 64 * 1024;

// Not fs.createReadStream: its destroy() closes the fd even with autoClose: false, and the
// fd is the image's (a consumer abandoning a reader must not close it under the image).
class RangeStream extends Readable implements RangeReader {
  #pos: number;
  readonly #end: number;

  constructor(
    private readonly image: Image,
    readonly range: Section,
  ) {
    super();
    this.#pos = range.offset;
    this.#end = image.type === SANDBOX ? range.offset : range.offset + range.size;
  }

  override _read(): void {
    const want = Math.min(CHUNK, this.#end - this.#pos);
    if (want <= 0) {
      this.push(null);
      return;
    }
    if (this.image.closed) {
      this.destroy(new ImgmountError('ERR_IMAGE_CLOSED', `image ${this.image.path} was closed while being read`));
      return;
    }
    const buf = Buffer.allocUnsafe(want);
    fs.read(this.image.fd, buf, 0, want, this.#pos, (err, n) => {
      if (err) {
        this.destroy(err);
      } else if (n === 0) {
        this.destroy(
          new ImgmountError('ERR_PARTITION_OUT_OF_BOUNDS', `"${this.range.name}" ends at ${this.#end} but the image ends at ${this.#pos}`),
        );
      } else {
        this.#pos += n;
        this.push(n === want ? buf : buf.subarray(0, n));
      }
    });
  }
}

function rangeStream(image: Image, range: Section): RangeReader {
  image.assertOpen();
  return new RangeStream(image, range);
}

function checkImage(image: Image): void {
  if (!image || typeof image !== 'object') throw invalidArgType('image', 'an Image', image);
}

/** A stream of one partition's bytes, chosen by name, by index, or by both (both must match). */
export function newPartitionReader(image: Image, name: string, index = -1): RangeReader {
  checkImage(image);
  return rangeStream(image, pick(image.partitions, name, index, 'partition'));
}

/** A stream of one section's bytes (a SIF object that is not a partition). */
export function newSectionReader(image: Image, name: string, index = -1): RangeReader {
  checkImage(image);
  return rangeStream(image, pick(image.sections, name, index, 'section'));
}

/** Reads a whole section into memory (e.g. oci-config.json), refusing anything over `maxBytes`. */
export async function readSection(image: Image, name: string, maxBytes = 16 * 1024 * 1024): Promise<Buffer> {
  const reader = newSectionReader(image, name);
  if (reader.range.size > maxBytes) {
    reader.destroy();
    throw argumentError('ERR_OUT_OF_RANGE', `section "${name}" is ${reader.range.size} bytes, over the ${maxBytes}-byte limit (maxBytes)`);
  }
  const chunks: Buffer[] = [];
  for await (const c of reader) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}
