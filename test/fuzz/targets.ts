// What the fuzzer drives (test/fuzz/harness.ts): init() on mutated images written to files,
// loadSif over a ByteSource of the mutated bytes, and the superblock and launch header checks
// on the bytes detection would hand them. Each run returns its outcomes ('ok' or an error
// code) or throws a Violation: an error that is not typed, a code the target may not give or
// the README does not document, a result that breaks the format's invariants, or more reads
// or bytes than the documented bound (counted through a ByteSource, never timed).
import fc from 'fast-check';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ImgmountError } from '../../lib/errors';
import { EXT3, ENCRYPTSQUASHFS, GOCRYPTFSSQUASHFS, MAX_DETECTION_READ, PARTITION_PROBE_SIZE, PROBE_SIZE, RAW, SIF, SQUASHFS } from '../../lib/image/constants';
import { checkExt3Header } from '../../lib/image/ext3';
import type { Image } from '../../lib/image/image';
import { detectionTestHooks, init } from '../../lib/image/init';
import { parseLaunchHeader } from '../../lib/image/launch-header';
import { readPartitionInfo } from '../../lib/image/partition-info';
import { NotThisFormat } from '../../lib/image/probe';
import { checkSquashfsHeader, getSquashfsComp, squashfsCompressions } from '../../lib/image/squashfs';
import type { ByteSource } from '../../lib/io/byte-source';
import { DESCRIPTOR_SIZE, HEADER_SIZE, MAX_DESCRIPTORS, descriptorData, loadSif } from '../../lib/sif';
import { applyMutations, errorSummary, layoutOf, mutationsArb, type Donor, type Img, type Layout, type Mutation } from './mutate';

export type ViolationKind = 'harness' | 'untyped' | 'unexpected-code' | 'undocumented-code' | 'bound' | 'invalid-result' | 'fd-leak' | 'hang';

/** A property failure the report names by kind. */
export class Violation extends Error {
  constructor(
    readonly kind: ViolationKind,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(`${kind}: ${message}`, options);
  }
  override get name(): string {
    return 'Violation';
  }
}

// ---- error classification ----

/** Node's argument error codes, which imgmount also uses (README "Errors"). */
const NODE_ARG_CODES = ['ERR_INVALID_ARG_TYPE', 'ERR_INVALID_ARG_VALUE', 'ERR_OUT_OF_RANGE'];

/** The ERR_* codes README.md's "Errors" section documents. */
export function documentedCodes(readme: string): Set<string> {
  const section = readme.split(/^## /m).find((s) => s.startsWith('Errors'));
  if (!section) throw new Error('README.md has no "## Errors" section');
  return new Set([...section.matchAll(/`(ERR_[A-Z0-9_]+)`/g)].map((m) => m[1]!));
}

/**
 * The code of a typed error, if `allowed` lets this target give it; else a Violation. Typed:
 * an ImgmountError (NotThisFormat included) with a documented ERR_* code and a message, or a
 * Node-style argument error (TypeError/RangeError with ERR_INVALID_ARG_* / ERR_OUT_OF_RANGE).
 */
export function classify(err: unknown, allowed: ReadonlySet<string>, documented: ReadonlySet<string>): string {
  if (err instanceof Violation) throw err;
  const code = (err as { code?: unknown } | null)?.code;
  const typed =
    (err instanceof ImgmountError && typeof code === 'string' && /^ERR_[A-Z0-9_]+$/.test(code)) ||
    ((err instanceof TypeError || err instanceof RangeError) && typeof code === 'string' && NODE_ARG_CODES.includes(code));
  if (!typed) throw new Violation('untyped', errorSummary(err), { cause: err });
  if (!documented.has(code)) throw new Violation('undocumented-code', `${code} is not in README.md's error table: ${errorSummary(err)}`, { cause: err });
  if (!allowed.has(code) && !NODE_ARG_CODES.includes(code)) throw new Violation('unexpected-code', `this target may not give ${code}: ${errorSummary(err)}`, { cause: err });
  if ((err as Error).message.length < 10) throw new Violation('invalid-result', `${code} with a message that says nothing: ${JSON.stringify((err as Error).message)}`);
  return code;
}

function invariant(ok: boolean, what: string): void {
  if (!ok) throw new Violation('invalid-result', what);
}

const safe = (n: unknown): n is number => typeof n === 'number' && Number.isSafeInteger(n) && n >= 0;

// ---- byte sources ----

/** A ByteSource over a mutated image: its bytes, then zeros up to its (maybe huge) size. */
export function imgSource(img: Img): ByteSource {
  return {
    size: img.size,
    async read(offset, length) {
      const end = Math.min(img.size, offset + length);
      if (offset >= end) return Buffer.alloc(0);
      const out = Buffer.alloc(end - offset);
      if (offset < img.data.length) img.data.copy(out, 0, offset, Math.min(end, img.data.length));
      return out;
    },
  };
}

export interface Budget {
  reads: number;
  bytes: number;
}

export interface Counted {
  source: ByteSource;
  reads: Array<[number, number]>;
  bytes: number;
  /** Why a request broke the budget or the ByteSource contract (kept even if the caller swallowed the rejection). */
  broken?: string;
}

/**
 * Counts what is asked of `inner` and refuses (before reading or allocating) any request
 * beyond the budget, or with an offset or length that is not a non-negative safe integer.
 */
export function counting(inner: ByteSource, budget: Budget): Counted {
  const c: Counted = {
    reads: [],
    bytes: 0,
    source: {
      size: inner.size,
      read(offset, length) {
        c.reads.push([offset, length]);
        if (!safe(offset) || !safe(length)) c.broken ??= `read(${offset}, ${length}): offset and length must be non-negative safe integers`;
        else {
          c.bytes += length;
          if (c.reads.length > budget.reads) c.broken ??= `${c.reads.length} reads, over the bound of ${budget.reads}`;
          else if (c.bytes > budget.bytes) c.broken ??= `${c.bytes} bytes asked in all, over the bound of ${budget.bytes}`;
        }
        if (c.broken) return Promise.reject(new Violation('bound', c.broken));
        return inner.read(offset, length);
      },
    },
  };
  return c;
}

function checkBudget(c: Counted): void {
  if (c.broken) throw new Violation('bound', `${c.broken}; reads: ${JSON.stringify(c.reads.slice(0, 8))}${c.reads.length > 8 ? '…' : ''}`);
}

// ---- bases ----

export interface Base {
  /** "shared:one-group.sif", "generated:ext3.img". */
  name: string;
  path: string;
  bytes: Buffer;
  layout: Layout;
}

export interface Corpus {
  bases: Base[];
  /** Bases with a SIF header (for the SIF reader). */
  sif: Base[];
  /** Filesystem starts of the generated squashfs and ext images, for transplants. */
  donors: Donor[];
}

/** Regular files of `dir` (not recursive) whose names pass `keep`. */
function filesOf(dir: string, keep: (name: string) => boolean): string[] {
  if (!fs.existsSync(dir)) return [];
  return fs
    .readdirSync(dir)
    .filter((n) => keep(n) && fs.statSync(path.join(dir, n)).isFile())
    .sort()
    .map((n) => path.join(dir, n));
}

/**
 * The real images fuzzed: the shared SIF fixtures (read in place), including Apptainer-built
 * ones, and every generated fixture file (squashfs, ext2/3/4, SIFs of every partition kind,
 * truncated and broken ones, text and zeros).
 */
export async function loadCorpus(sifFixturesDir: string, generatedDir: string): Promise<Corpus> {
  const files: Array<[string, string]> = [
    ...filesOf(sifFixturesDir, (n) => n.endsWith('.sif')).map((p): [string, string] => [`shared:${path.basename(p)}`, p]),
    ...filesOf(path.join(sifFixturesDir, 'apptainer'), (n) => n.endsWith('.sif')).map((p): [string, string] => [`shared:apptainer/${path.basename(p)}`, p]),
    ...filesOf(generatedDir, (n) => !n.startsWith('.')).map((p): [string, string] => [`generated:${path.basename(p)}`, p]),
  ];
  const bases: Base[] = [];
  for (const [name, p] of files) {
    const bytes = fs.readFileSync(p);
    bases.push({ name, path: p, bytes, layout: await layoutOf(bytes) });
  }
  const donors: Donor[] = bases
    .filter((b) => b.name.startsWith('generated:') && !b.layout.sif && (b.layout.squashfs.length > 0 || b.layout.ext.length > 0))
    .map((b) => ({ name: b.name, bytes: b.bytes.subarray(b.layout.launch, b.layout.launch + 4096) }));
  return { bases, sif: bases.filter((b) => b.layout.sif), donors };
}

// ---- targets ----

export interface TargetContext {
  corpus: Corpus;
  documented: ReadonlySet<string>;
  /** Where the init target writes its files. */
  workDir: string;
}

export interface Target<I> {
  name: string;
  arbitrary(corpus: Corpus): fc.Arbitrary<I>;
  /** Runs one input: its outcomes ('ok' or error codes, prefixed per check), or a Violation. */
  run(input: I, ctx: TargetContext): Promise<string[]>;
  /** The input as JSON, naming the base by name (for counterexamples). */
  describe(input: I, corpus: Corpus): unknown;
}

interface Mutated {
  base: number;
  muts: Mutation[];
}

/** The fuzzer's own failure (making an input), not the library's. */
function harness<T>(what: string, fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    throw new Violation('harness', `${what}: ${errorSummary(err)}`, { cause: err });
  }
}

function mutated(list: Base[], input: Mutated, corpus: Corpus): { base: Base; img: Img } {
  const base = list[input.base % list.length]!;
  return { base, img: harness('applying the mutations', () => applyMutations(base.bytes, base.layout, input.muts, corpus.donors)) };
}

const describeMutated = (list: (c: Corpus) => Base[]) => <I extends Mutated>(input: I, corpus: Corpus) => ({
  ...input,
  base: `${list(corpus)[input.base % list(corpus).length]!.name} (#${input.base})`,
});

// init(): detection, opening, reopening for writing, ext3 locks, then what a driver asks next.

const INIT_CODES = new Set([
  'ERR_IMAGE_UNKNOWN_FORMAT',
  'ERR_SQUASHFS_INVALID',
  'ERR_SQUASHFS_UNSUPPORTED',
  'ERR_EXT3_INVALID',
  'ERR_EXT3_UNSUPPORTED_FEATURES',
  'ERR_SIF_INVALID',
  'ERR_SIF_UNSUPPORTED_VERSION',
  'ERR_SIF_TRUNCATED',
  'ERR_PARTITION_INVALID',
  'ERR_ARCH_MISMATCH',
  'ERR_READ_ONLY_FS',
]);
/** What detection may read of any file (README "Security"): MAX_DETECTION_READ bytes in at most 3 + MAX_DESCRIPTORS reads. */
export const INIT_BUDGET: Budget = { reads: 3 + MAX_DESCRIPTORS, bytes: MAX_DETECTION_READ };

interface InitInput extends Mutated {
  writable: boolean;
  readOnlyFallback: boolean;
}

function openFdCount(): number {
  return fs.readdirSync('/proc/self/fd').length;
}

/** Writes a mutated image to `file`: its bytes, then a sparse tail up to its size. */
function writeImage(file: string, img: Img): void {
  fs.writeFileSync(file, img.data);
  if (img.size > img.data.length) {
    try {
      fs.truncateSync(file, img.size);
    } catch (err) {
      // A file system that caps file sizes below it (ext4: 16 TiB): as large as it allows.
      if ((err as NodeJS.ErrnoException).code !== 'EFBIG' && (err as NodeJS.ErrnoException).code !== 'EINVAL') throw err;
      fs.truncateSync(file, Math.min(img.size, 2 ** 44 - 4096));
    }
  }
}

function checkImage(image: Image, input: InitInput, fileSize: number): void {
  invariant([SIF, SQUASHFS, EXT3].includes(image.type), `image type 0x${image.type.toString(16)} for a regular file`);
  for (const s of [...image.partitions, ...image.sections]) {
    invariant(safe(s.offset) && safe(s.size) && s.offset + s.size <= fileSize, `${s.name || s.id}: bytes ${s.offset}+${s.size} outside the ${fileSize}-byte file`);
  }
  for (const p of image.partitions) invariant([SQUASHFS, EXT3, ENCRYPTSQUASHFS, RAW, GOCRYPTFSSQUASHFS].includes(p.type), `partition type 0x${p.type.toString(16)}`);
  if (image.type !== SIF) {
    invariant(image.partitions.length === 1, `${image.partitions.length} partitions in a bare image`);
    const p = image.partitions[0]!;
    invariant(p.offset <= 2048 && p.size === fileSize - p.offset, `bare image partition at ${p.offset}+${p.size} in a ${fileSize}-byte file`);
  }
  if (input.writable && image.type === SQUASHFS) invariant(input.readOnlyFallback && !image.writable, 'a squashfs image opened writable');
  JSON.stringify(image.toJSON());
}

export const initTarget: Target<InitInput> = {
  name: 'init',
  arbitrary: (corpus) =>
    fc.record({ base: fc.nat(corpus.bases.length - 1), muts: mutationsArb, writable: fc.boolean(), readOnlyFallback: fc.boolean() }),
  describe: describeMutated((c) => c.bases),
  async run(input, ctx) {
    const { img } = mutated(ctx.corpus.bases, input, ctx.corpus);
    const file = path.join(ctx.workDir, 'image');
    const fileSize = harness('writing the image', () => (writeImage(file, img), fs.statSync(file).size));
    const fds = openFdCount();
    let count: Counted | undefined;
    detectionTestHooks.wrapSource = (s) => (count = counting(s, INIT_BUDGET)).source;
    const outcomes: string[] = [];
    let image: Image | undefined;
    try {
      image = await init(file, input.writable, { readOnlyFallback: input.readOnlyFallback });
    } catch (err) {
      if (count) checkBudget(count);
      outcomes.push(classify(err, INIT_CODES, ctx.documented));
    } finally {
      delete detectionTestHooks.wrapSource;
    }
    if (image) {
      try {
        if (count) checkBudget(count);
        checkImage(image, input, fileSize);
        outcomes.push('ok');
        // What driver selection reads next must agree with what detection accepted.
        for (const p of image.partitions) {
          if (p.type !== SQUASHFS && p.type !== EXT3) continue;
          try {
            const info = await readPartitionInfo(image, p);
            invariant((p.type === SQUASHFS ? info.squashfs : info.ext3) !== undefined, `readPartitionInfo gave nothing for partition ${p.id}`);
          } catch (err) {
            throw new Violation('invalid-result', `init accepted partition ${p.id} (${p.name}) but readPartitionInfo refuses it: ${errorSummary(err)}`, { cause: err });
          }
        }
      } finally {
        await image.close();
      }
    }
    const after = openFdCount();
    if (after !== fds) throw new Violation('fd-leak', `${after - fds} fd(s) more open after init() and close()`);
    return outcomes;
  },
};

// loadSif over the mutated bytes: at most the header and one table read.

const SIF_CODES = new Set(['ERR_SIF_INVALID', 'ERR_SIF_UNSUPPORTED_VERSION', 'ERR_SIF_TRUNCATED']);
/** The header, then a table of at most MAX_DESCRIPTORS slots, in at most two reads. */
export const SIF_BUDGET: Budget = { reads: 2, bytes: HEADER_SIZE + MAX_DESCRIPTORS * DESCRIPTOR_SIZE };

export const sifTarget: Target<Mutated> = {
  name: 'sif',
  arbitrary: (corpus) => fc.record({ base: fc.nat(corpus.sif.length - 1), muts: mutationsArb }),
  describe: describeMutated((c) => c.sif),
  async run(input, ctx) {
    const { img } = mutated(ctx.corpus.sif, input, ctx.corpus);
    const count = counting(imgSource(img), SIF_BUDGET);
    let outcome: string;
    try {
      const sif = await loadSif(count.source);
      checkBudget(count);
      const h = sif.header;
      invariant(sif.size === img.size, `size ${sif.size}, not ${img.size}`);
      invariant(safe(h.descriptorsTotal) && h.descriptorsTotal <= MAX_DESCRIPTORS && sif.descriptors.length <= h.descriptorsTotal, `${sif.descriptors.length} descriptors of ${h.descriptorsTotal}`);
      const ids = new Set<number>();
      for (const d of sif.descriptors) {
        invariant(d.id > 0 && !ids.has(d.id), `descriptor id ${d.id} zero or repeated`);
        ids.add(d.id);
        invariant(safe(d.offset) && safe(d.size) && d.offset + d.size <= img.size, `object ${d.id} at ${d.offset}+${d.size} outside ${img.size} bytes`);
        const head = await descriptorData(imgSource(img), d, { length: Math.min(d.size, 64) });
        invariant(head.length === Math.min(d.size, 64), `object ${d.id}: read ${head.length} bytes`);
      }
      outcome = 'ok';
    } catch (err) {
      checkBudget(count);
      outcome = classify(err, SIF_CODES, ctx.documented);
    }
    invariant(count.reads.length === 0 || (count.reads[0]![0] === 0 && count.reads[0]![1] === HEADER_SIZE), `first read ${JSON.stringify(count.reads[0])}, not the header`);
    return [outcome];
  },
};

// Superblock and launch header checks on what detection hands them: the first PROBE_SIZE bytes
// of a file, or PARTITION_PROBE_SIZE bytes at a partition's start.

interface HeadersInput extends Mutated {
  /** Which start: 0, then the image's squashfs, ext and object starts. */
  at: number;
  launchHeader: boolean;
  size: 'none' | 'real' | 'short' | 'huge';
  anyExtFeatures: boolean;
}

const SQUASHFS_CODES = new Set(['ERR_IMAGE_UNKNOWN_FORMAT', 'ERR_SQUASHFS_INVALID', 'ERR_SQUASHFS_UNSUPPORTED']);
const EXT_CODES = new Set(['ERR_IMAGE_UNKNOWN_FORMAT', 'ERR_EXT3_INVALID', 'ERR_EXT3_UNSUPPORTED_FEATURES']);

function headerCheck(what: string, allowed: ReadonlySet<string>, documented: ReadonlySet<string>, fn: () => void): string {
  try {
    fn();
    return `${what}:ok`;
  } catch (err) {
    const code = classify(err, allowed, documented);
    return `${what}:${err instanceof NotThisFormat ? 'not-this-format' : code}`;
  }
}

export const headersTarget: Target<HeadersInput> = {
  name: 'headers',
  arbitrary: (corpus) =>
    fc.record({
      base: fc.nat(corpus.bases.length - 1),
      muts: mutationsArb,
      at: fc.nat(16),
      launchHeader: fc.boolean(),
      size: fc.constantFrom('none' as const, 'real' as const, 'short' as const, 'huge' as const),
      anyExtFeatures: fc.boolean(),
    }),
  describe: describeMutated((c) => c.bases),
  async run(input, ctx) {
    const { base, img } = mutated(ctx.corpus.bases, input, ctx.corpus);
    const l = base.layout;
    const starts = [0, ...l.squashfs, ...l.ext.map((o) => o - 1024), ...l.objects.map((o) => o.offset)];
    const start = starts[input.at % starts.length]!;
    const buf = await imgSource(img).read(start, start === 0 ? PROBE_SIZE : PARTITION_PROBE_SIZE);
    const avail = Math.max(0, img.size - start);
    const size = input.size === 'none' ? undefined : input.size === 'real' ? avail : input.size === 'short' ? Math.floor(avail / 2) : 2 ** 53 - 1;
    const doc = ctx.documented;

    const launch = parseLaunchHeader(buf);
    const hashBang = buf.length >= 2 && buf[0] === 0x23 && buf[1] === 0x21;
    if (launch === undefined) {
      const nl = buf.indexOf(0x0a, 2);
      invariant(hashBang && (nl < 0 || nl >= 2048), 'launch header refused though "#!" has a line end within 2048 bytes');
    } else if (!hashBang) invariant(launch.length === 0, `launch header of ${launch.length} bytes without "#!"`);
    else invariant(launch.length > 2 && launch.length <= 2048 && buf[launch.length - 1] === 0x0a, `launch header length ${launch.length}`);
    const skip = input.launchHeader ? (launch?.length ?? 0) : 0;

    const out = [
      headerCheck('squashfs', SQUASHFS_CODES, doc, () => {
        const sq = checkSquashfsHeader(buf, { launchHeader: input.launchHeader, ...(size === undefined ? {} : { size }) });
        invariant(sq.offset === skip, `squashfs offset ${sq.offset}, launch header ${skip}`);
        invariant(sq.major === 4 && squashfsCompressions[sq.compressionId] === sq.compression, `squashfs ${sq.major}.${sq.minor} ${sq.compression}`);
        invariant(sq.blockSize >= 4096 && sq.blockSize <= 1 << 20 && (sq.blockSize & (sq.blockSize - 1)) === 0, `squashfs block size ${sq.blockSize}`);
        invariant(safe(sq.bytesUsed) && (size === undefined || sq.bytesUsed <= size - sq.offset), `squashfs bytesUsed ${sq.bytesUsed} in ${size}`);
        if (input.launchHeader) invariant(getSquashfsComp(buf) === sq.compression, 'getSquashfsComp disagrees with checkSquashfsHeader');
      }),
      headerCheck('ext3', EXT_CODES, doc, () => {
        const e = checkExt3Header(buf, { launchHeader: input.launchHeader, anyExtFeatures: input.anyExtFeatures, ...(size === undefined ? {} : { size }) });
        invariant(e.offset === skip, `ext offset ${e.offset}, launch header ${skip}`);
        invariant(e.blockSize >= 1024 && e.blockSize <= 65536 && (e.blockSize & (e.blockSize - 1)) === 0, `ext block size ${e.blockSize}`);
        invariant(safe(e.blocksCount) && safe(e.fsSize) && e.fsSize === e.blocksCount * e.blockSize, `ext ${e.blocksCount} blocks of ${e.blockSize} = ${e.fsSize}`);
        invariant(size === undefined || e.fsSize <= size - e.offset, `ext spans ${e.fsSize} in ${size}`);
        if (!input.anyExtFeatures) invariant((e.compat & 0x4) !== 0 && (e.incompat & ~0x16) === 0 && (e.roCompat & ~0x7) === 0, `ext3 accepted with features ${e.compat}/${e.incompat}/${e.roCompat}`);
        invariant(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/.test(e.uuid), `uuid ${e.uuid}`);
      }),
    ];
    return out;
  },
};

export const targets = { init: initTarget, sif: sifTarget, headers: headersTarget } as const;
export type TargetName = keyof typeof targets;
