// Fault injection for tests (native/faults.h): makes named native steps fail with a chosen
// errno, as if the kernel had refused them, and counts how often each step ran. Not exported
// from the package; inert until a test calls injectFaults().
//
// Steps of the addon are named as the syscall they guard ('ioctl(LOOP_CONFIGURE)', 'fsopen',
// 'fsconfig(source)', 'move_mount', 'openat2', 'umount2', 'open(/dev/loopN)', ...). Steps of
// the namespace helper (native/helper/nsenter.c) carry the prefix 'nsenter:' ('nsenter:mount',
// 'nsenter:setns(CLONE_NEWNS)', ...): every helper run is a process of its own, so this module
// keeps their counters and hands each run the rules that are still due (the helper gets them in
// IMGMOUNT_TEST_FAULTS together with the --test-faults flag, and reports its hits back).
//
// Only EBUSY, EAGAIN, ENOSPC, ENOMEM and EIO can be injected: see native/faults.h for why that
// keeps the hook harmless in a privileged process.

import { constants as osConstants } from 'node:os';
import { binding } from './binding';

export const HELPER_STEP_PREFIX = 'nsenter:';

export type InjectableErrno = 'EBUSY' | 'EAGAIN' | 'ENOSPC' | 'ENOMEM' | 'EIO';
export const INJECTABLE_ERRNOS: readonly InjectableErrno[] = ['EBUSY', 'EAGAIN', 'ENOSPC', 'ENOMEM', 'EIO'];

export interface FaultRule {
  /** A native step ('ioctl(LOOP_CONFIGURE)'), or a helper step ('nsenter:move_mount'). */
  step: string;
  errno: InjectableErrno | number;
  /** Hits of the step to let through first (default 0). */
  skip?: number;
  /** Failures to inject after those (default 1). */
  times?: number;
}

interface HelperRule {
  step: string;
  errno: number;
  skip: number;
  times: number;
}

let helperRules: HelperRule[] | null = null;
const helperHits = new Map<string, number>();

function errnoOf(e: InjectableErrno | number): number {
  if (typeof e === 'number') return e;
  const n = (osConstants.errno as Record<string, number>)[e];
  if (n === undefined || !INJECTABLE_ERRNOS.includes(e)) throw new RangeError(`errno ${String(e)} may not be injected (${INJECTABLE_ERRNOS.join(', ')})`);
  return n;
}

const STEP = /^[\w()/.:=<>-]{1,63}$/;

/**
 * Arms fault injection with `rules` (an empty array: count steps only) and resets every hit
 * counter; null disarms (nothing counted, nothing injected: the state a process starts in).
 */
export function injectFaults(rules: FaultRule[] | null): void {
  if (rules === null) {
    binding().injectFaults(null);
    helperRules = null;
    helperHits.clear();
    return;
  }
  const native: Array<{ step: string; errno: number; skip: number; times: number }> = [];
  const helper: HelperRule[] = [];
  for (const r of rules) {
    const rule = { step: r.step, errno: errnoOf(r.errno), skip: r.skip ?? 0, times: r.times ?? 1 };
    if (!Number.isSafeInteger(rule.skip) || rule.skip < 0 || !Number.isSafeInteger(rule.times) || rule.times < 0) throw new RangeError(`skip and times must be integers >= 0 (${r.step})`);
    if (r.step.startsWith(HELPER_STEP_PREFIX)) {
      const step = r.step.slice(HELPER_STEP_PREFIX.length);
      // The helper's spec separates rules with ';' and fields with ','.
      if (!STEP.test(step) || /[;,]/.test(step)) throw new RangeError(`not a helper step name: ${r.step}`);
      helper.push({ ...rule, step });
    } else {
      native.push(rule);
    }
  }
  binding().injectFaults(native);
  helperRules = helper;
  helperHits.clear();
}

/** How often each step ran since injectFaults() armed (helper steps with their prefix). */
export function faultHits(): Record<string, number> {
  const out: Record<string, number> = { ...(binding().faultHits() as Record<string, number>) };
  for (const [step, n] of helperHits) out[HELPER_STEP_PREFIX + step] = n;
  return out;
}

/**
 * @internal For lib/ns/helper.ts: the argument and environment that arm the next helper run
 * (rules already past their failures left out, skips reduced by the hits so far), or null
 * while nothing is armed.
 */
export function helperFaultArming(): { flag: string; env: Record<string, string> } | null {
  if (helperRules === null) return null;
  const due: string[] = [];
  for (const r of helperRules) {
    const hits = helperHits.get(r.step) ?? 0;
    const injected = Math.min(Math.max(hits - r.skip, 0), r.times);
    if (injected >= r.times) continue;
    due.push(`${r.step},${r.errno},${Math.max(r.skip - hits, 0)},${r.times - injected}`);
  }
  return { flag: '--test-faults', env: { IMGMOUNT_TEST_FAULTS: due.join(';') } };
}

/** @internal Takes the helper's "H <step> <hits>" lines out of its result text and counts them. */
export function takeHelperHits(text: string): string {
  if (!text.includes('H ')) return text;
  const kept: string[] = [];
  for (const line of text.split('\n')) {
    const m = /^H (\S+) (\d+)$/.exec(line);
    if (m && helperRules !== null) helperHits.set(m[1]!, (helperHits.get(m[1]!) ?? 0) + Number(m[2]));
    else if (!m) kept.push(line);
  }
  return kept.join('\n');
}
