// Where and when a bench ran: machine, kernel, node, commit, load.
import { execFileSync } from 'node:child_process';
import * as os from 'node:os';
import type { Capabilities } from '../../lib';

export interface Machine {
  date: string;
  cpu: string;
  cpus: number;
  kernel: string;
  node: string;
  commit: string;
  /** 1-minute load average at the start and at the end. */
  load: [number, number];
  /** What capabilities() says about the kernel paths the rows take. */
  kernelApis: string;
}

function git(repo: string, args: string[]): string {
  try {
    return execFileSync('git', ['-C', repo, ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    return '';
  }
}

/** The commit, with "+ uncommitted changes" when the library or the bench differ from it (the generated report aside). */
export function commitOf(repo: string): string {
  const head = git(repo, ['rev-parse', '--short=12', 'HEAD']) || 'unknown';
  const dirty = git(repo, ['status', '--porcelain', '--', '.', ':!BENCHMARKS.md', ':!docs/benchmarks']);
  return dirty ? `${head} + uncommitted changes` : head;
}

/**
 * A warning when other work shared the CPUs. The 1-minute load average at the start holds the
 * build that `npm run bench` runs first, and at the end the bench's own process (about one
 * CPU), so it warns above three quarters of the CPUs at the start, or at the end less one.
 */
export function busyWarning(m: Pick<Machine, 'cpus' | 'load'>): string | null {
  const others = Math.max(m.load[0], m.load[1] - 1);
  if (others <= 0.75 * m.cpus) return null;
  return `the machine was busy (load average ${m.load[0].toFixed(2)} at the start, ${m.load[1].toFixed(2)} at the end, on ${m.cpus} CPUs): other processes shared the CPUs, so times and event-loop delays are inflated and spread out; run again when it is idle`;
}

export function describeMachine(repo: string, caps: Capabilities, loadAtStart: number): Machine {
  const cpus = os.cpus();
  return {
    date: new Date().toISOString(),
    cpu: `${cpus.length} × ${cpus[0]?.model ?? 'unknown CPU'}`,
    cpus: cpus.length,
    kernel: `${os.type()} ${os.release()}`,
    node: process.version,
    commit: commitOf(repo),
    load: [loadAtStart, os.loadavg()[0]!],
    kernelApis: `LOOP_CONFIGURE ${caps.loopConfigure ? 'yes' : 'no'}, new mount API ${caps.newMountApi}`,
  };
}
