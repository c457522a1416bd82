// init(): open a path, recognise the image format, and describe its partitions.
//
// Order and semantics follow Apptainer's pkg/image Init (sandbox, SIF, squashfs, ext3;
// soft "not this format" versus hard "this format, but broken"), with the fixes listed in
// docs/DEVELOPERS.md: one open and one read shared by all probes, small files probed on
// what they hold, FIFOs/sockets/devices refused before open, and an unknown file's error
// saying per format why it was rejected.

import { debug } from '../util/debug';
import { ImgmountError, fromNodeError, invalidArgType, invalidArgValue, throwIfAborted } from '../errors';
import * as nodePath from 'node:path';
import { fdSource, type ByteSource } from '../io/byte-source';
import { windowSource, type WindowSource } from '../io/window-source';
import { Admission, OPERATIONS_IN_FLIGHT } from '../util/admission';
import { EXT3, PARTITION_PROBE_SIZE, PROBE_SIZE, RootFsUsage, SQUASHFS } from './constants';
import type { Section } from './section';
import { ext3Format } from './formats/ext3';
import type { DetectedImage, ImageFormat, ProbeContext } from './formats/format';
import { sandboxFormat } from './formats/sandbox';
import { sifFormat } from './formats/sif';
import { squashfsFormat } from './formats/squashfs';
import { Image } from './image';
import { lockExt3Partitions } from './lock';
import { closeFdFrom } from '../io/fd';
import { describeCredentials, validateCredentials, type UserCredentials } from './credentials';
import { openImageFile, openImageFileAs, reopenReadOnly, reopenReadWrite, returnWindow, type OpenedFile } from './open-file';
import { NotThisFormat, type FormatRejection } from './probe';

/** Formats in the order Apptainer tries them. */
export const imageFormats: readonly ImageFormat[] = [sandboxFormat, sifFormat, squashfsFormat, ext3Format];

/**
 * Seam for tests of the detection bound (MAX_DETECTION_READ): wraps the ByteSource every
 * detection read goes through, so a test can count what a hostile header makes init() read.
 */
export interface DetectionTestHooks {
  wrapSource?: (source: ByteSource) => ByteSource;
}
export const detectionTestHooks: DetectionTestHooks = {};

export interface InitOptions {
  signal?: AbortSignal;
  /**
   * When writing was asked for but the format is read-only (squashfs), resolve with a
   * read-only image (its `warnings` say so) instead of rejecting with ERR_READ_ONLY_FS.
   * Apptainer does this for overlay and data images.
   */
  readOnlyFallback?: boolean;
  /**
   * Open the image with this user's credentials, for a privileged process acting for that
   * user: the path (and every symlink on it) is followed with the user's rights, the image
   * must be readable by them (else ERR_IMAGE_NOT_READABLE), and with `writable` writable by
   * them (else it is opened read-only, with a warning). No check runs as root. The image's
   * `path` is where the opened fd leads.
   */
  as?: UserCredentials;
  /**
   * With `as`: accept a path that leads to a block device (refused by default, since the
   * user could name any disk they may read). Without `as`, block devices are always accepted.
   */
  allowBlockDevice?: boolean;
}

/** A short hint about what an unrecognised file is, from its first bytes. */
function contentHint(head: Buffer, size: number): string {
  if (size === 0) return 'the file is empty';
  const sample = head.subarray(0, 512);
  const text = sample.toString('latin1');
  if (/^\s*<(!doctype html|html)/i.test(text)) return 'the file looks like an HTML page (a failed download?)';
  let printable = 0;
  for (const c of sample) if (c === 9 || c === 10 || c === 13 || (c >= 32 && c < 127)) printable++;
  if (sample.length > 0 && printable / sample.length > 0.95) return 'the file looks like text, not an image';
  return '';
}

async function detect(ctx: ProbeContext): Promise<DetectedImage> {
  const rejections: FormatRejection[] = [];
  for (const format of imageFormats) {
    const refused = format.refuse?.(ctx);
    if (refused !== undefined) {
      rejections.push({ format: format.name, reason: refused });
      continue;
    }
    try {
      return await format.probe(ctx);
    } catch (err) {
      if (err instanceof NotThisFormat) {
        rejections.push({ format: format.name, reason: err.reason });
        continue;
      }
      throw err;
    }
  }
  const hint = contentHint(ctx.head, ctx.size);
  throw new ImgmountError(
    'ERR_IMAGE_UNKNOWN_FORMAT',
    `image format not recognized: ${ctx.path}` +
      (hint ? ` (${hint})` : '') +
      rejections.map((r) => `\n  ${r.format}: ${r.reason}`).join(''),
    { path: ctx.path, details: { rejections } },
  );
}

/**
 * Opens and recognises the image at `path`. With `writable`, the image is opened read-write
 * if the user may write it and the format allows it (else see `readOnlyFallback`).
 */
export function init(path: string, writable = false, options: InitOptions = {}): Promise<Image> {
  return inits.run(() => openAndDetect(path, writable, options), options.signal);
}

/** At most OPERATIONS_IN_FLIGHT inits at once (see util/admission.ts). */
const inits = new Admission(OPERATIONS_IN_FLIGHT);

async function openAndDetect(path: string, writable: boolean, options: InitOptions): Promise<Image> {
  if (typeof path !== 'string') throw invalidArgType('path', 'of type string', path);
  const { signal } = options;
  const as = options.as === undefined ? undefined : validateCredentials(options.as, 'options.as');
  if (options.allowBlockDevice !== undefined && typeof options.allowBlockDevice !== 'boolean') {
    throw invalidArgType('options.allowBlockDevice', 'of type boolean', options.allowBlockDevice);
  }
  throwIfAborted(signal);
  const opened = as === undefined ? await openAsCaller(path, writable) : await openAsUser(path, writable, as, options.allowBlockDevice ?? false);
  try {
    return await detectOpened(opened, writable, options, as);
  } finally {
    // Detection is over: what it kept was copied out of the window.
    if (opened.borrowed) returnWindow(opened.borrowed);
  }
}

/** Recognises the opened file and makes the Image (the fd is closed if that fails). */
async function detectOpened(opened: Opened, writable: boolean, options: InitOptions, as: UserCredentials | undefined): Promise<Image> {
  const { signal } = options;
  const { file, resolved } = opened;
  let { wantWrite } = opened;
  let fd = file.fd;
  // The fd from the open is the addon's; one reopened below is fs.open's (see lib/io/fd.ts).
  let addonFd = true;
  try {
    throwIfAborted(signal);
    const window = opened.window ? windowSource(fd, file.size, opened.window) : undefined;
    const plain = window ?? fdSource(fd, file.size);
    const source = detectionTestHooks.wrapSource?.(plain) ?? plain;
    const head = file.kind === 'directory' ? Buffer.alloc(0) : await readHead(source, resolved);
    throwIfAborted(signal);
    const found = await detect({ fd, kind: file.kind, size: file.size, head, source, path: resolved });
    const warnings = [...found.warnings];
    if (writable && !found.writable) {
      const err = new ImgmountError(
        'ERR_READ_ONLY_FS',
        `could not set ${resolved} image writable: squashfs is a read-only filesystem`,
        { path: resolved },
      );
      if (!options.readOnlyFallback) throw err;
      warnings.push(err.message);
      wantWrite = false;
    } else if (writable && !wantWrite) {
      warnings.push(`${resolved} opened read-only: no write permission` + (as ? ` for ${describeCredentials(as)}` : ''));
    }
    if (wantWrite && file.kind !== 'directory' && !file.writable) {
      const rw = await reopenReadWrite(file, resolved);
      await closeFdFrom(fd, addonFd);
      fd = rw;
      addonFd = false;
    } else if (!wantWrite && file.kind !== 'directory' && file.writable) {
      // Opened read-write as the user, but it will not be written (squashfs): drop write access.
      const ro = await reopenReadOnly(file, resolved);
      await closeFdFrom(fd, addonFd);
      fd = ro;
      addonFd = false;
    }
    throwIfAborted(signal);
    await lockExt3Partitions(fd, found.partitions, wantWrite, resolved, warnings);
    throwIfAborted(signal);
    return new Image({
      partitions: found.partitions,
      sections: found.sections,
      path: resolved,
      type: found.type,
      fd,
      writable: wantWrite,
      usage: RootFsUsage | found.extraUsage,
      warnings,
      superblocks: window ? superblocksOf(window, found.partitions) : undefined,
      ownership: file.ownership,
      addonFd,
    });
  } catch (err) {
    await closeFdFrom(fd, addonFd).catch(() => undefined);
    throw err;
  }
}

interface Opened {
  file: OpenedFile;
  resolved: string;
  wantWrite: boolean;
  /** The first bytes, read with the open (not with `as`). */
  window?: Buffer;
  /** The borrowed buffer `window` is a view of, given back once detection is over. */
  borrowed?: Buffer;
}

/** As the calling process: resolve, check access with the real uid (as Apptainer), open, read the head: one native hop. */
async function openAsCaller(path: string, writable: boolean): Promise<Opened> {
  if (path === '') throw invalidArgValue('path', path, 'must not be empty (failed to get absolute path)');
  const file = await openImageFile(nodePath.resolve(path), writable);
  let wantWrite = writable;
  if (wantWrite && !file.writeAccess) {
    debug('opening %s in read-only mode: no write permissions', file.path);
    wantWrite = false;
  }
  return { file, resolved: file.path, wantWrite, window: file.head, borrowed: file.window };
}

/** As the user `as`: one open with their credentials; no check or path resolution as root. */
async function openAsUser(path: string, writable: boolean, as: UserCredentials, allowBlockDevice: boolean): Promise<Opened> {
  if (path === '') throw invalidArgValue('path', path, 'must not be empty');
  const file = await openImageFileAs(path, writable, as, allowBlockDevice);
  if (file.readOnlyReason !== undefined) debug('opening %s in read-only mode: %s', file.path, file.readOnlyReason);
  return { file, resolved: file.path, wantWrite: file.writable === true };
}

/**
 * The superblocks detection read, kept (copied, so the window can go) for driver selection and
 * readPartitionInfo(): at most PARTITION_PROBE_SIZE bytes per partition.
 */
function superblocksOf(window: WindowSource, partitions: readonly Section[]): Map<number, Buffer> {
  const out = new Map<number, Buffer>();
  for (const p of partitions) {
    if (p.type !== SQUASHFS && p.type !== EXT3) continue;
    const head = window.cached(p.offset, Math.min(PARTITION_PROBE_SIZE, p.size));
    if (head) out.set(p.offset, Buffer.from(head));
  }
  return out;
}

async function readHead(source: ByteSource, displayPath: string): Promise<Buffer> {
  try {
    return await source.read(0, Math.min(PROBE_SIZE, source.size));
  } catch (err) {
    throw fromNodeError(err, `can't read the start of ${displayPath}`);
  }
}
