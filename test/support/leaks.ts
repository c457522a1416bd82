// Leak check for tests that attach loop devices and mount: at the end of the run, any loop
// device bound to a test file (under testTmp, the repo or the shared fixtures) that was not
// bound before the run, any mount at or under testTmp (or registered by a test), and any FUSE
// helper process (squashfuse, fuse2fs, gocryptfs, fuse-overlayfs) started during the run is a
// failure. Fields are compared exactly: backing files by resolved path components, mounts by
// their unescaped mountinfo mount point, never by string prefix (/dev/loop1 vs /dev/loop10).
// What is found is cleaned up before the failure is thrown, so the machine stays clean.
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';

/** Directories whose files count as "test files". */
const roots: string[] = [];
/** Mount points a test created (checked even outside the roots). */
const registeredMounts = new Set<string>();

let before: { loops: Set<string>; mounts: Set<string>; helpers: Set<string> } | undefined;

/** Programs that serve FUSE mounts; one still running after the suite is a leaked helper. */
const HELPER_PROGRAMS = new Set(['squashfuse', 'squashfuse_ll', 'fuse2fs', 'gocryptfs', 'fuse-overlayfs']);

/** Running FUSE helper processes, as "pid comm". */
export function helperProcesses(): string[] {
  const out: string[] = [];
  for (const pid of fs.readdirSync('/proc').filter((n) => /^\d+$/.test(n))) {
    try {
      const comm = fs.readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
      const state = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.[0];
      if (HELPER_PROGRAMS.has(comm) && state !== 'Z') out.push(`${pid} ${comm}`);
    } catch {
      // gone meanwhile
    }
  }
  return out;
}

export function addLeakRoot(dir: string): void {
  roots.push(path.resolve(dir));
}

/** Registers a mount point a test creates (exact path, as mountinfo will show it). */
export function registerMountPoint(p: string): string {
  registeredMounts.add(path.resolve(p));
  return p;
}

function within(p: string, dir: string): boolean {
  const rel = path.relative(dir, p);
  return rel === '' || (!rel.startsWith('..') && !path.isAbsolute(rel) && rel.split(path.sep)[0] !== '..');
}

export interface BoundLoop {
  name: string;
  backingFile: string;
}

function unescapeMountField(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
}

/** Bound loop devices from sysfs (no privilege needed). */
export function boundLoops(): BoundLoop[] {
  let names: string[] = [];
  try {
    names = fs.readdirSync('/sys/block').filter((n) => /^loop\d+$/.test(n));
  } catch {
    return [];
  }
  const out: BoundLoop[] = [];
  for (const name of names) {
    try {
      const raw = fs.readFileSync(`/sys/block/${name}/loop/backing_file`, 'utf8').replace(/\n$/, '');
      out.push({ name, backingFile: raw.endsWith(' (deleted)') ? raw.slice(0, -' (deleted)'.length) : raw });
    } catch {
      // not bound
    }
  }
  return out;
}

/** Mount points of /proc/self/mountinfo (field 5, unescaped). */
export function mountPoints(): string[] {
  return fs
    .readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => unescapeMountField(l.split(' ')[4]!));
}

function isTestFile(f: string): boolean {
  return roots.some((r) => within(f, r));
}

function leakedLoops(): BoundLoop[] {
  return boundLoops().filter((l) => isTestFile(l.backingFile) && !before?.loops.has(`${l.name}\0${l.backingFile}`));
}

function leakedMounts(testTmp: string): string[] {
  return mountPoints().filter(
    (m) => (registeredMounts.has(m) || within(m, testTmp)) && !before?.mounts.has(m),
  );
}

export function snapshotLeaks(): void {
  before = {
    loops: new Set(boundLoops().map((l) => `${l.name}\0${l.backingFile}`)),
    mounts: new Set(mountPoints()),
    helpers: new Set(helperProcesses()),
  };
}

function sleepSync(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

/**
 * Returns a description of what leaked ('' if nothing), after cleaning it up. Waits a short
 * while first: a killed child's fds and an auto-clearing device settle asynchronously.
 */
export function checkLeaks(testTmp: string): string {
  const leakedHelpers = () => helperProcesses().filter((h) => !before?.helpers.has(h));
  let loops = leakedLoops();
  let mounts = leakedMounts(testTmp);
  let helpers = leakedHelpers();
  for (let i = 0; i < 40 && (loops.length || mounts.length || helpers.length); i++) {
    sleepSync(50);
    loops = leakedLoops();
    mounts = leakedMounts(testTmp);
    helpers = leakedHelpers();
  }
  if (!loops.length && !mounts.length && !helpers.length) return '';
  const report = [
    ...mounts.map((m) => `mount left at ${m}`),
    ...loops.map((l) => `loop device /dev/${l.name} left bound to ${l.backingFile}`),
    ...helpers.map((h) => `FUSE helper process ${h} still running`),
  ].join('\n  ');
  for (const h of helpers) {
    try {
      process.kill(Number(h.split(' ')[0]), 'SIGKILL');
    } catch {
      // already gone
    }
  }
  // Clean up so that a failing run does not leave the machine dirty.
  for (const m of mounts.sort((a, b) => b.length - a.length)) {
    try {
      execFileSync('umount', ['-l', m], { stdio: 'ignore' });
    } catch {
      // best effort
    }
  }
  for (const l of leakedLoops()) {
    try {
      execFileSync('losetup', ['-d', `/dev/${l.name}`], { stdio: 'ignore' });
    } catch {
      // best effort
    }
  }
  return report;
}
