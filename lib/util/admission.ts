// Admission: at most N operations of a kind build at once; the rest wait their turn (FIFO).
//
// Why: libuv runs the continuations of every pool request that completed meanwhile in one go.
// With 64 roots in flight the event loop woke to dozens of completions at a time and ran their
// JavaScript back to back (20-30 ms without a timer firing, measured with 64 concurrent roots
// on a 2-core VM). Measured there with 64 roots (half with a tmpfs overlay), 4 runs each: 8 in
// flight gave a p99 loop delay of 4-10 ms, 4 gave 2-6 ms, 2 gave 1-8 ms, and the whole batch
// took as long every time (the main thread, 4 pool threads and the kernel's serialised mounts
// are the limit, not admission); 24 FUSE roots: p99 8-24 ms with 8, 4-12 ms with 4, same wall
// time. 4, not 2: an operation that waits (a FUSE helper starting or stopping, up to its
// timeout) holds its slot, and 2 such would stall every other root.

import { abortError } from './abort';

export class Admission {
  #active = 0;
  readonly #waiting: Array<() => void> = [];

  constructor(readonly limit: number) {}

  /** Runs `fn` once a slot is free (a waiting caller's abort rejects with AbortError). */
  async run<T>(fn: () => Promise<T>, signal?: AbortSignal): Promise<T> {
    if (this.#active >= this.limit) await this.#wait(signal);
    this.#active++;
    try {
      return await fn();
    } finally {
      this.#release();
    }
  }

  /**
   * run() for work that should be brief: a `fn` still running after `holdMs` gives its slot up
   * (it is waiting on something, a slow disk or a hung filesystem, not using a CPU), so that
   * one stuck call never holds up the others.
   */
  async runBriefly<T>(fn: () => Promise<T>, holdMs: number): Promise<T> {
    if (this.#active >= this.limit) await this.#wait(undefined);
    this.#active++;
    let held = true;
    const letGo = (): void => {
      if (!held) return;
      held = false;
      this.#release();
    };
    const timer = setTimeout(letGo, holdMs);
    timer.unref();
    try {
      return await fn();
    } finally {
      clearTimeout(timer);
      letGo();
    }
  }

  #release(): void {
    this.#active--;
    this.#waiting.shift()?.();
  }

  #wait(signal: AbortSignal | undefined): Promise<void> {
    if (signal?.aborted) return Promise.reject(abortError(signal));
    return new Promise((resolve, reject) => {
      const go = (): void => {
        signal?.removeEventListener('abort', onAbort);
        resolve();
      };
      const onAbort = (): void => {
        const i = this.#waiting.indexOf(go);
        if (i >= 0) this.#waiting.splice(i, 1);
        reject(abortError(signal!));
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.#waiting.push(go);
    });
  }
}

/** Builds (init, root) and releases in flight at once, per kind. */
export const OPERATIONS_IN_FLIGHT = 4;
