// Helpers for the tests of forged state and untrusted configuration: scratch directories with
// an exact mode, live processes a forged record can name, environment variables set for one
// test, and the rejection a call must end in.
import { expect } from 'chai';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { ImgmountError } from '../../lib/errors';
import { processExe, processStartTime, type HelperRecord } from '../../lib/drivers/mount-record';
import { testTmp } from './hooks';

let n = 0;

/** A fresh path under the run's scratch directory (not created). */
export function scratchPath(name: string): string {
  return path.join(testTmp, `${name}-${process.pid}-${n++}`);
}

/** A fresh directory under the run's scratch directory with exactly `mode` (no umask). */
export function scratchDir(mode: number, name = 'dir'): string {
  const d = scratchPath(name);
  fs.mkdirSync(d, { recursive: true });
  fs.chmodSync(d, mode);
  return d;
}

/** True while `pid` runs (a zombie does not). */
export function running(pid: number): boolean {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const state = stat.slice(stat.lastIndexOf(')') + 2)[0];
    return state !== 'Z' && state !== 'X';
  } catch {
    return false;
  }
}

/** The error `p` rejects with; fails the test if it resolves. */
export async function rejection(p: Promise<unknown>): Promise<ImgmountError> {
  const err = await p.then(
    () => null,
    (e: unknown) => e,
  );
  expect(err, 'expected a rejection').to.be.instanceOf(Error);
  return err as ImgmountError;
}

const sleepers: ChildProcess[] = [];

/**
 * A live `sleep 60` (or `program 60`) and what a record would say about it as a squashfuse_ll
 * helper: its pid, start time and executable. killSleepers() ends them.
 */
export async function sleeper(program = 'sleep'): Promise<{ child: ChildProcess; helper: HelperRecord }> {
  const child = spawn(program, ['60'], { stdio: 'ignore' });
  sleepers.push(child);
  await once(child, 'spawn');
  const pid = child.pid!;
  return { child, helper: { program: 'squashfuse_ll', pid, startTime: (await processStartTime(pid))!, exe: (await processExe(pid))! } };
}

export async function killSleepers(): Promise<void> {
  for (const c of sleepers.splice(0)) {
    if (c.exitCode !== null || c.signalCode !== null) continue;
    const gone = once(c, 'exit');
    c.kill('SIGKILL');
    await gone;
  }
}

const savedEnv = new Map<string, string | undefined>();

/** Sets an environment variable until restoreEnv(). */
export function setEnv(name: string, value: string): void {
  if (!savedEnv.has(name)) savedEnv.set(name, process.env[name]);
  process.env[name] = value;
}

export function restoreEnv(): void {
  for (const [k, v] of savedEnv) {
    if (v === undefined) delete process.env[k];
    else process.env[k] = v;
  }
  savedEnv.clear();
}
