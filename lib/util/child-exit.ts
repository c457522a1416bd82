// A child's exit, captured when it is spawned. Listening later misses an 'exit' or 'close'
// that already happened (a program that fails at once, a `cat` that is done before an awaited
// step returns), and a promise that never settles is a hang.

import type { ChildProcess } from 'node:child_process';
import { PassThrough, type Readable, type Writable } from 'node:stream';
import { finished } from 'node:stream/promises';

export interface ChildExit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface ExitTracker {
  /** Settles on 'exit' (the process is gone; its pipes may still be open). */
  exited: Promise<ChildExit>;
  /**
   * Settles once it exited, its pipes closed and all its output is readable from
   * child.stdout/stderr. A listener added now still has to be given the data: to read all
   * of it, wait for that stream's end too (see readOutput).
   */
  closed: Promise<ChildExit>;
}

const trackers = new WeakMap<ChildProcess, ExitTracker>();

/** Starts (or returns) the tracker of `child`; call it right after spawn, before any await. */
export function trackExit(child: ChildProcess): ExitTracker {
  let t = trackers.get(child);
  if (!t) {
    const exited = new Promise<ChildExit>((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
    const closedEvent = new Promise<ChildExit>((resolve) => child.once('close', (code, signal) => resolve({ code, signal })));
    // stdout/stderr may be PassThrough streams that keep the output (lib/ns/helper.ts): wait
    // until everything is in them (their writable side finished), not until someone read it.
    const kept = [child.stdout, child.stderr].filter((s): s is Readable & Writable => s instanceof PassThrough);
    const stored = Promise.all(kept.map((s) => finished(s, { readable: false }).catch(() => undefined)));
    t = { exited, closed: Promise.all([closedEvent, stored]).then(([e]) => e) };
    trackers.set(child, t);
  }
  return t;
}

/** Reads a child's stdout to its end and waits for its exit: { code, signal, stdout }. */
export async function readOutput(child: ChildProcess): Promise<ChildExit & { stdout: string }> {
  const t = trackExit(child);
  let stdout = '';
  const out = child.stdout;
  if (out) {
    out.setEncoding('utf8');
    out.on('data', (d: string) => (stdout += d));
  }
  const [e] = await Promise.all([t.exited, out ? finished(out).catch(() => undefined) : undefined]);
  return { ...e, stdout };
}
