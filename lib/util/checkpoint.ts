// Named points between the steps of an operation that builds something (root(), mountImage(),
// mount(), bindMount()): where an abort is honoured — everything done so far is then undone by
// the operation's own failure path — and where tests stop a process (kill -9 at every step, then
// cleanup()) or abort it, to prove nothing is left behind whatever the moment.

import { throwIfAborted } from '../errors';

type Hook = (name: string) => void;
let hook: Hook | undefined;

/** @internal For tests: called at every checkpoint, before the abort check. */
export function setCheckpointHook(h: Hook | undefined): void {
  hook = h;
}

/** A point between two steps: the test hook runs, then an aborted signal throws AbortError. */
export function checkpoint(name: string, signal: AbortSignal | undefined): void {
  hook?.(name);
  throwIfAborted(signal);
}
