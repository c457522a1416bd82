// Whether a privileged process may rely on a path (a state directory, a program or addon an
// environment variable names): nobody but root (or, for a process that is not root, the
// effective user) can change what it is or what it holds.
//
// The path is resolved first (realpath of its parent; of the path itself only with
// `followFinal`), then every component of the resolved path is lstat'ed from the root down:
//  - each one is owned by root (or the effective uid, when that is not root);
//  - each ancestor is a directory (a symlink there means it was swapped after resolving) not
//    writable by group or others, unless it has the sticky bit (like /tmp: nobody can rename
//    or remove what others own in it);
//  - the object itself is not a symlink (unless followed) and not writable by group or others.
// The first failure is the verdict's `reason` ("/x/y is writable by others (mode 0777)").
// ACLs are not looked at. Callers use the resolved `path` afterwards, never the name they were
// given: a symlink on the way could be swapped later, the checked directories cannot.
//
// The steps are one generator, run by the asynchronous checkTrustedPath (fs.promises) or by
// checkTrustedPathSync for the two callers that must answer synchronously (loading the addon;
// a driver's features()).

import type { Stats } from 'node:fs';
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';

export interface TrustOptions {
  /** Follow a symlink at the end and judge what it points to (default false: a symlink there is refused). */
  followFinal?: boolean;
  /** The effective uid to judge for (default this process's). */
  euid?: number;
}

export interface TrustVerdict {
  /** The path as checked: absolute, resolved (its last component too with `followFinal`). */
  path: string;
  /** Why a privileged process may not rely on it; null when it may. */
  reason: string | null;
  /** The error code ('ENOENT', ...) when the reason is that a component could not be examined. */
  code?: string;
}

/** S_ISVTX (not in Node's fs.constants). */
const STICKY = 0o1000;

type Step = { op: 'realpath' | 'lstat'; path: string };
type Outcome = { ok: true; value: unknown } | { ok: false; error: unknown };

function mode(st: Stats): string {
  return (st.mode & 0o7777).toString(8).padStart(4, '0');
}

/** Who else can write it: "others" (whatever the group may do: the mode says), "group", or null. */
function writers(st: Stats): string | null {
  if ((st.mode & 0o002) !== 0) return 'others';
  if ((st.mode & 0o020) !== 0) return 'group';
  return null;
}

function failed(p: string, what: string, error: unknown): TrustVerdict {
  const code = (error as NodeJS.ErrnoException).code;
  return { path: p, reason: `${what} cannot be examined (${(error as Error).message ?? String(error)})`, ...(code !== undefined ? { code } : {}) };
}

function* steps(given: string, options: TrustOptions): Generator<Step, TrustVerdict, Outcome> {
  const euid = options.euid ?? process.geteuid?.() ?? -1;
  const abs = path.resolve(given);
  let resolved: string;
  if (options.followFinal || abs === path.dirname(abs)) {
    const r = yield { op: 'realpath', path: abs };
    if (!r.ok) return failed(abs, abs, r.error);
    resolved = r.value as string;
  } else {
    const r = yield { op: 'realpath', path: path.dirname(abs) };
    if (!r.ok) return failed(abs, path.dirname(abs), r.error);
    resolved = path.join(r.value as string, path.basename(abs));
  }
  const owners = euid === 0 ? 'root' : `root or uid ${euid}`;
  const parts = resolved.split(path.sep).filter((p) => p !== '');
  const components = ['/', ...parts.map((_, i) => '/' + parts.slice(0, i + 1).join('/'))];
  for (const [i, c] of components.entries()) {
    const last = i === components.length - 1;
    const r = yield { op: 'lstat', path: c };
    if (!r.ok) return failed(resolved, c, r.error);
    const st = r.value as Stats;
    const verdict = (reason: string): TrustVerdict => ({ path: resolved, reason: `${c} ${reason}` });
    if (st.isSymbolicLink()) return verdict(last ? 'is a symbolic link' : 'is a symbolic link (changed while it was checked)');
    if (!last && !st.isDirectory()) return verdict('is not a directory');
    if (st.uid !== 0 && st.uid !== euid) return verdict(`is owned by uid ${st.uid}, not ${owners}`);
    const w = writers(st);
    if (w && (last || (st.mode & STICKY) === 0)) return verdict(`is writable by ${w} (mode ${mode(st)})`);
  }
  return { path: resolved, reason: null };
}

const succeeded = (value: unknown): Outcome => ({ ok: true, value });
const failedWith = (error: unknown): Outcome => ({ ok: false, error });

/** Whether a privileged process may rely on `p` (see the file comment). Never rejects: problems are the reason. */
export async function checkTrustedPath(p: string, options: TrustOptions = {}): Promise<TrustVerdict> {
  const g = steps(p, options);
  for (let next = g.next(); ; ) {
    if (next.done) return next.value;
    const step = next.value;
    next = g.next(await (step.op === 'lstat' ? fsp.lstat(step.path) : fsp.realpath(step.path)).then(succeeded, failedWith));
  }
}

/**
 * checkTrustedPath with synchronous calls (a realpath and one lstat per component), for callers
 * that cannot wait: binding() loads the addon synchronously, FuseDriver.features() answers
 * synchronously. Everything else uses checkTrustedPath.
 */
export function checkTrustedPathSync(p: string, options: TrustOptions = {}): TrustVerdict {
  const g = steps(p, options);
  for (let next = g.next(); ; ) {
    if (next.done) return next.value;
    const step = next.value;
    let outcome: Outcome;
    try {
      outcome = succeeded(step.op === 'lstat' ? fs.lstatSync(step.path) : fs.realpathSync(step.path));
    } catch (error) {
      outcome = failedWith(error);
    }
    next = g.next(outcome);
  }
}
