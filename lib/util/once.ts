// An idempotent release (unmount, detach) that may be retried after a failure: concurrent
// callers share one attempt, a success is final, a failure (EBUSY...) lets the next call try
// again, and "already gone" counts as done for disposal.

import { hasErrorCode } from '../errors';

export class RetryableOnce {
  #done: Promise<void> | undefined;

  /** True once an attempt is running or has succeeded. */
  get started(): boolean {
    return this.#done !== undefined;
  }

  run(attempt: () => Promise<void>): Promise<void> {
    if (this.#done) return this.#done;
    const p = attempt();
    this.#done = p;
    p.catch(() => {
      if (this.#done === p) this.#done = undefined;
    });
    return p;
  }

  /** For [Symbol.asyncDispose]: like run(), but ERR_NOT_MOUNTED (someone else released it) is success. */
  async dispose(attempt: () => Promise<void>): Promise<void> {
    try {
      await this.run(attempt);
    } catch (err) {
      if (!hasErrorCode(err, 'ERR_NOT_MOUNTED')) throw err;
      this.#done = Promise.resolve();
    }
  }
}
