// How long to wait before retrying a step that another party made fail for a moment (EAGAIN,
// EBUSY of a device being set up).

/** Exponential back-off step with a little jitter (attempt 0 is the first retry). */
export function backoffMs(attempt: number, startMs: number, maxMs: number): number {
  const base = Math.min(maxMs, startMs * 2 ** Math.min(attempt, 20));
  return base / 2 + Math.random() * (base / 2);
}
