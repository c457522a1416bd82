// Restoring an Image from its JSON plus an inherited fd: how Apptainer's starter stages
// hand an opened image to the next stage (ReInit). We check what the JSON claims against
// the fd instead of trusting it: the fd must be open, of the right kind, opened for writing
// if the JSON says writable, and every partition must lie inside the file.

import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import { ImgmountError, argumentError, fromNodeError, invalidArgType, throwIfAborted } from '../errors';
import { NO_FD, SANDBOX, type ImageType } from './constants';
import { Image, type ImageJSON } from './image';
import { fstatFd } from '../io/fd';
import { sectionFromJSON, type SectionJSON } from './section';

export interface FromJSONOptions {
  /** The fd to use instead of the one named in the JSON (e.g. after it was renumbered). */
  fd?: number;
  /** Whether close() closes the fd (default true). */
  ownsFd?: boolean;
  signal?: AbortSignal;
}

function invalid(message: string): TypeError {
  return argumentError('ERR_INVALID_ARG_VALUE', `invalid image JSON: ${message}`);
}

function checkSection(s: unknown, what: string): SectionJSON {
  const o = s as Record<string, unknown>;
  if (!o || typeof o !== 'object') throw invalid(`${what} is not an object`);
  for (const k of ['size', 'offset', 'id', 'type', 'allowed_usage']) {
    if (!Number.isSafeInteger(o[k]) || (o[k] as number) < 0) throw invalid(`${what}.${k} is not a non-negative integer`);
  }
  if (typeof o.name !== 'string') throw invalid(`${what}.name is not a string`);
  return o as unknown as SectionJSON;
}

/** Restores a usable Image from Apptainer-compatible JSON and an open fd. */
export async function fromJSON(json: string | ImageJSON, options: FromJSONOptions = {}): Promise<Image> {
  throwIfAborted(options.signal);
  let j: ImageJSON;
  try {
    j = typeof json === 'string' ? (JSON.parse(json) as ImageJSON) : json;
  } catch (err) {
    throw argumentError('ERR_INVALID_ARG_VALUE', `invalid image JSON: ${(err as Error).message}`, { cause: err });
  }
  if (!j || typeof j !== 'object') throw invalidArgType('json', 'an Image JSON object or string', json);
  if (typeof j.path !== 'string' || j.path === '') throw invalid('path is missing');
  if (!Number.isSafeInteger(j.type)) throw invalid('type is not an integer');
  const fd = options.fd ?? j.fd;
  if (!Number.isSafeInteger(fd) || fd < 0 || fd >= NO_FD) {
    throw new ImgmountError('ERR_IMAGE_CLOSED', `image ${j.path} has no open fd to restore from`, { path: j.path });
  }
  const partitions = (j.partitions ?? []).map((s, i) => sectionFromJSON(checkSection(s, `partitions[${i}]`)));
  const sections = (j.sections ?? []).map((s, i) => sectionFromJSON(checkSection(s, `sections[${i}]`)));

  let st: fs.Stats;
  try {
    st = await fstatFd(fd);
  } catch (err) {
    throw fromNodeError(err, `fd ${fd} of image ${j.path} is not open`);
  }
  throwIfAborted(options.signal);
  const isSandbox = j.type === SANDBOX;
  if (isSandbox ? !st.isDirectory() : !(st.isFile() || st.isBlockDevice())) {
    throw invalid(`fd ${fd} is ${st.isDirectory() ? 'a directory' : 'not a directory'}, but the JSON says type 0x${j.type.toString(16)}`);
  }
  // The file may have been renamed since; the fd is the truth (Apptainer's engine does the same).
  let path = j.path;
  try {
    const target = (await fsp.readlink(`/proc/self/fd/${fd}`)).replace(/ \(deleted\)$/, '');
    if (target !== path) path = target;
  } catch {
    // No /proc: keep the JSON's path.
  }
  if (j.writable) {
    const fdinfo = await fsp.readFile(`/proc/self/fdinfo/${fd}`, 'utf8').catch(() => '');
    const flags = Number.parseInt(/^flags:\s*([0-7]+)/m.exec(fdinfo)?.[1] ?? '0', 8);
    if (!isSandbox && (flags & 3) === fs.constants.O_RDONLY /* O_ACCMODE */) {
      throw invalid(`the JSON says writable but fd ${fd} is open read-only`);
    }
  }
  if (!isSandbox && st.isFile()) {
    for (const p of [...partitions, ...sections]) {
      if (p.offset + p.size > st.size) {
        throw new ImgmountError(
          'ERR_PARTITION_OUT_OF_BOUNDS',
          `"${p.name}" (id ${p.id}) spans ${p.offset}..${p.offset + p.size} but ${path} has only ${st.size} bytes`,
          { path },
        );
      }
    }
  }
  return new Image({
    partitions,
    sections,
    path,
    type: j.type as ImageType,
    fd,
    writable: Boolean(j.writable),
    usage: Number.isSafeInteger(j.usage) ? j.usage : 0,
    ownsFd: options.ownsFd ?? true,
  });
}

/** Apptainer's name for the same operation. */
export const reInit = fromJSON;
