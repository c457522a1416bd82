// Finding the FUSE helper programs, as Apptainer's fuseapps registration does: squashfuse_ll
// then squashfuse, fuse2fs, gocryptfs, fuse-overlayfs (and fusermount3 for unprivileged
// unmounts), in a configured binary path or in the system directories (SYSTEM_PATH), never
// through the caller's PATH (which may hold '.' or a user's directory). IMGMOUNT_FUSE_PATH
// replaces the system directories; in a process whose effective uid is 0 only if each of its
// directories passes the trust check (lib/util/trusted-path), else ERR_UNSAFE_OVERRIDE.
// Memoised per search path.
//
// Two facts are probed from the programs themselves, once:
//  - whether squashfuse_ll takes `-o uid=,gid=` (Apptainer runs it without arguments and looks
//    for "-o uid=" in the usage text; plain squashfuse is assumed to), when first needed;
//  - whether each can serve an already-mounted /dev/fuse fd given as `/dev/fd/N`. libfuse 3
//    (3.3+) and go-fuse (gocryptfs 2.3+: go-fuse's parseFuseFd) can; libfuse 2 cannot, and
//    takes /dev/fd/N for a path: Debian's fuse2fs 1.47 is linked against libfuse 2 and,
//    handed /dev/fd/N, mounts itself over /dev/fuse. Such programs mount by themselves and we wait for their mount instead.

import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { ImgmountError, invalidArgType } from '../../errors';
import { debug } from '../../util/debug';
import { checkTrustedPathSync } from '../../util/trusted-path';

/** Where helper programs are looked up, and the PATH helpers run with. */
export const SYSTEM_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/** The programs the FUSE driver runs, by role. */
export type FuseProgram = 'squashfuse' | 'fuse2fs' | 'gocryptfs' | 'fuse-overlayfs' | 'fusermount3';

export const FUSE_PROGRAMS: readonly FuseProgram[] = ['squashfuse', 'fuse2fs', 'gocryptfs', 'fuse-overlayfs', 'fusermount3'];

/** Names looked up per role, first found wins. */
const CANDIDATES: Record<FuseProgram, readonly string[]> = {
  squashfuse: ['squashfuse_ll', 'squashfuse'],
  fuse2fs: ['fuse2fs'],
  gocryptfs: ['gocryptfs'],
  'fuse-overlayfs': ['fuse-overlayfs'],
  fusermount3: ['fusermount3'],
};

/** Debian package of each role, for "how to install" messages. */
export const FUSE_PACKAGES: Record<FuseProgram, string> = {
  squashfuse: 'squashfuse',
  fuse2fs: 'fuse2fs',
  gocryptfs: 'gocryptfs',
  'fuse-overlayfs': 'fuse-overlayfs',
  fusermount3: 'fuse3',
};

export interface FuseBinaryOptions {
  /**
   * Directories to search, colon-separated (Apptainer's `binary path`).
   * Default: IMGMOUNT_FUSE_PATH (checked when root), else SYSTEM_PATH; never PATH.
   */
  binaryPath?: string;
  /** Exact programs per role, overriding the search (e.g. { squashfuse: '/usr/bin/squashfuse' }). */
  programs?: Partial<Record<FuseProgram, string>>;
}

export interface FuseBinaries {
  /** squashfuse_ll, or squashfuse if that is all there is. */
  squashfuse: string | null;
  fuse2fs: string | null;
  gocryptfs: string | null;
  fuseOverlayfs: string | null;
  fusermount3: string | null;
  /** Programs (by path) that can serve a pre-mounted /dev/fuse fd given as /dev/fd/N. */
  fdPassing: Record<string, boolean>;
  /** The directories searched. */
  searched: string[];
}

function dirList(raw: string): string[] {
  return raw.split(':').filter((d) => d !== '').map((d) => path.resolve(d));
}

/** IMGMOUNT_FUSE_PATH directories that passed the trust check: as given -> as resolved. */
const trustedOverrideDirs = new Map<string, string>();

/**
 * IMGMOUNT_FUSE_PATH's directories; as root, each must pass the trust check (synchronously:
 * locateFuseBinaries answers for features(), see there), resolved; ERR_UNSAFE_OVERRIDE if not.
 */
function overrideDirs(raw: string): string[] {
  const dirs = dirList(raw);
  if ((process.geteuid?.() ?? -1) !== 0) return dirs;
  return dirs.flatMap((dir) => {
    const hit = trustedOverrideDirs.get(dir);
    if (hit !== undefined) return [hit];
    const verdict = checkTrustedPathSync(dir, { followFinal: true });
    if (verdict.code === 'ENOENT') return []; // nothing to find there
    if (verdict.reason !== null)
      throw new ImgmountError('ERR_UNSAFE_OVERRIDE', `IMGMOUNT_FUSE_PATH names ${dir}, which a privileged process may not run programs from: ${verdict.reason}`, {
        path: dir,
        details: { variable: 'IMGMOUNT_FUSE_PATH', reason: verdict.reason },
      });
    trustedOverrideDirs.set(dir, verdict.path);
    return [verdict.path];
  });
}

function searchDirs(options: FuseBinaryOptions): string[] {
  if (options.binaryPath !== undefined) return dirList(options.binaryPath);
  const env = process.env.IMGMOUNT_FUSE_PATH;
  return env !== undefined && env !== '' ? overrideDirs(env) : dirList(SYSTEM_PATH);
}

function executable(file: string): boolean {
  try {
    const st = fs.statSync(file);
    if (!st.isFile()) return false;
    fs.accessSync(file, fs.constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** Type checks of explicit options (no lookup, no environment). */
export function checkBinaryOptions(options: FuseBinaryOptions): void {
  if (options.binaryPath !== undefined && typeof options.binaryPath !== 'string')
    throw invalidArgType('options.binaryPath', 'a colon-separated list of directories', options.binaryPath);
  checkPrograms(options.programs);
}

function checkPrograms(programs: FuseBinaryOptions['programs']): void {
  if (programs === undefined) return;
  if (typeof programs !== 'object' || programs === null) throw invalidArgType('options.programs', 'an object', programs);
  for (const [k, v] of Object.entries(programs)) {
    if (!(FUSE_PROGRAMS as readonly string[]).includes(k)) throw invalidArgType(`options.programs.${k}`, `one of ${FUSE_PROGRAMS.join(', ')}`, k);
    if (v !== undefined && (typeof v !== 'string' || v === '')) throw invalidArgType(`options.programs.${k}`, 'a program path', v);
  }
}

type Located = Omit<FuseBinaries, 'fdPassing'>;

const located = new Map<string, Located>();

function cacheKey(dirs: string[], programs: FuseBinaryOptions['programs']): string {
  return JSON.stringify([dirs, programs ?? {}]);
}

/**
 * Where each program is (no probing). Synchronous on purpose: a handful of stat() calls on
 * local directories, done once per search path; features() must answer synchronously.
 */
export function locateFuseBinaries(options: FuseBinaryOptions = {}): Located {
  checkBinaryOptions(options);
  const dirs = searchDirs(options);
  const key = cacheKey(dirs, options.programs);
  const hit = located.get(key);
  if (hit) return hit;
  const find = (role: FuseProgram): string | null => {
    const explicit = options.programs?.[role];
    if (explicit !== undefined) {
      const p = explicit.includes('/') ? path.resolve(explicit) : dirs.map((d) => path.join(d, explicit)).find(executable);
      return p !== undefined && executable(p) ? p : null;
    }
    for (const name of CANDIDATES[role]) for (const d of dirs) if (executable(path.join(d, name))) return path.join(d, name);
    return null;
  };
  const r: Located = {
    squashfuse: find('squashfuse'),
    fuse2fs: find('fuse2fs'),
    gocryptfs: find('gocryptfs'),
    fuseOverlayfs: find('fuse-overlayfs'),
    fusermount3: find('fusermount3'),
    searched: dirs,
  };
  debug('fuse: binaries %j', r);
  located.set(key, r);
  return r;
}

const probed = new Map<string, Promise<FuseBinaries>>();

/** What was found, with each program's fd-passing support. Memoised. */
export function fuseBinaries(options: FuseBinaryOptions = {}): Promise<FuseBinaries> {
  const loc = locateFuseBinaries(options);
  const key = cacheKey(loc.searched, options.programs);
  let p = probed.get(key);
  if (!p) {
    p = probe(loc);
    probed.set(key, p);
    p.catch(() => probed.delete(key));
  }
  return p;
}

async function probe(loc: Located): Promise<FuseBinaries> {
  const fdPassing: Record<string, boolean> = {};
  const programs = [loc.squashfuse, loc.fuse2fs, loc.gocryptfs, loc.fuseOverlayfs].filter((p): p is string => p !== null);
  await Promise.all(programs.map(async (p) => (fdPassing[p] = await servesFuseFd(p))));
  return { ...loc, fdPassing };
}

const ownerProbes = new Map<string, Promise<boolean>>();

/**
 * Whether `program` (squashfuse_ll or squashfuse) takes `-o uid=N,gid=N`: plain squashfuse is
 * assumed to, as Apptainer does; squashfuse_ll if running it without arguments prints "-o uid=".
 * Probed on first need only (it runs the program), memoised.
 */
export function squashfuseOwnerOptions(program: string): Promise<boolean> {
  if (path.basename(program) === 'squashfuse') return Promise.resolve(true);
  let p = ownerProbes.get(program);
  if (!p) {
    p = usageMentions(program, '-o uid=');
    ownerProbes.set(program, p);
  }
  return p;
}

/** Runs `program` without arguments (as Apptainer does) and looks for `needle` in its output. */
function usageMentions(program: string, needle: string): Promise<boolean> {
  return new Promise((resolve) => {
    execFile(program, [], { timeout: 2000, killSignal: 'SIGKILL', env: { PATH: SYSTEM_PATH, LC_ALL: 'C' } }, (_err, stdout, stderr) => {
      resolve(`${stdout}${stderr}`.includes(needle));
    });
  });
}

const LIBFUSE3 = Buffer.from('libfuse3.so.3');
const LIBFUSE2 = Buffer.from('libfuse.so.2');
// go-fuse's /dev/fd/N parser (function names stay in Go binaries' pclntab, even stripped).
const GO_FUSE_FD = Buffer.from('/fuse.parseFuseFd');

/**
 * Whether `program` understands a `/dev/fd/N` mount point: dynamically linked against libfuse 3
 * (which has parsed it since 3.3), or carrying go-fuse's parseFuseFd. Scripts and
 * libfuse 2 programs do not; they get a mount point and mount by themselves.
 */
export async function servesFuseFd(program: string): Promise<boolean> {
  let bytes: Buffer;
  try {
    const fh = await fsp.open(program, 'r');
    try {
      const st = await fh.stat();
      // Helpers are small (< 1 MiB) or static Go programs (< 64 MiB); read them once.
      if (st.size > 64 * 1024 * 1024) return false;
      bytes = await fh.readFile();
    } finally {
      await fh.close();
    }
  } catch {
    return false;
  }
  if (bytes.subarray(0, 4).toString('latin1') !== '\x7fELF') return false;
  if (bytes.includes(LIBFUSE3) && !bytes.includes(LIBFUSE2)) return true;
  return bytes.includes(GO_FUSE_FD);
}

/** ERR_FUSE_UNAVAILABLE for a program that is not installed. */
export function missingProgram(role: FuseProgram, purpose: string, searched: string[]): ImgmountError {
  const names = CANDIDATES[role].join(' or ');
  return new ImgmountError(
    'ERR_FUSE_UNAVAILABLE',
    `${names} not found (searched ${searched.join(':') || 'nothing'}), so the FUSE driver cannot ${purpose}: ` +
      `install the Debian package ${FUSE_PACKAGES[role]} (scripts/setup-host.sh installs every FUSE helper), or set the driver's binaryPath`,
    { details: { program: CANDIDATES[role][0], package: FUSE_PACKAGES[role], searched } },
  );
}

/** Forgets what was found (tests, or after installing a program). */
export function resetFuseBinaries(): void {
  located.clear();
  probed.clear();
  ownerProbes.clear();
}
