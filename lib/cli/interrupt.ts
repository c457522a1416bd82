// SIGINT/SIGTERM while a command builds mounts: an AbortSignal the command passes down, so
// what it had done is undone by the operation itself, and an exit status that says which
// signal it was (128 + its number, as shells report it).

import { setCheckpointHook } from '../util/checkpoint';

const SIGNALS = { SIGINT: 2, SIGTERM: 15 } as const;

export interface Interruptible {
  readonly signal: AbortSignal;
  /** 128 + the signal's number once one arrived, else null. */
  readonly status: number | null;
  readonly name: string | null;
  dispose(): void;
}

export function interruptible(): Interruptible {
  const ac = new AbortController();
  let got: keyof typeof SIGNALS | null = null;
  const handlers = (Object.keys(SIGNALS) as Array<keyof typeof SIGNALS>).map((name) => {
    const h = (): void => {
      got ??= name;
      ac.abort(new Error(`interrupted by ${name}`));
    };
    process.on(name, h);
    return [name, h] as const;
  });
  testInterrupt();
  return {
    signal: ac.signal,
    get status() {
      return got === null ? null : 128 + SIGNALS[got];
    },
    get name() {
      return got;
    },
    dispose() {
      for (const [name, h] of handlers) process.off(name, h);
      setCheckpointHook(undefined);
    },
  };
}

/**
 * Test hook: IMGMOUNT_TEST_INTERRUPT_AT=N[:SIGTERM] sends this process SIGINT (or SIGTERM) at
 * the Nth checkpoint of what the command builds, so tests can interrupt it at every step. It
 * only ever interrupts.
 */
function testInterrupt(): void {
  const m = /^(\d+)(?::(SIGINT|SIGTERM))?$/.exec(process.env.IMGMOUNT_TEST_INTERRUPT_AT ?? '');
  if (!m || Number(m[1]) === 0) return;
  const at = Number(m[1]);
  const sig = (m[2] ?? 'SIGINT') as 'SIGINT' | 'SIGTERM';
  let n = 0;
  setCheckpointHook(() => {
    if (++n === at) process.kill(process.pid, sig);
  });
}
