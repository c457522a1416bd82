// Errors that point at the caller's code. An error made after an await, or in a native
// callback, has a stack of event-loop frames; these give it the stack of the JavaScript that
// called the public API instead, as core `fs` does. One rule for both ways of taking it:
// early (callerStack, api: before the first await) or at the failure (restackHere: V8's async
// stack traces still name every async function awaiting the failing one, and nothing is
// captured on the path that succeeds).

/**
 * The frames of the current stack above `fn`, captured now and formatted only when read
 * (V8 formats a captured stack lazily: the capture is cheap, the text is not, and on the path
 * that succeeds it is never read).
 */
// eslint-disable-next-line @typescript-eslint/no-unsafe-function-type
function framesAbove(fn: Function): { readonly stack?: string } {
  const site: { stack?: string } = {};
  Error.captureStackTrace(site, fn);
  return site;
}

function withFrames<E>(e: E, site: { readonly stack?: string }): E {
  const stack = site.stack;
  if (e instanceof Error && stack) e.stack = `${e.name}: ${e.message}${stack.slice(stack.indexOf('\n'))}`;
  return e;
}

/**
 * Captures the caller's stack now (synchronously, at the public API boundary) and returns a
 * function that gives it to an error made later, after any number of awaits or in a native
 * callback, so that stacks point at the caller's code as with core `fs`.
 */
// eslint-disable-next-line @typescript-eslint/no-unsafe-function-type
export function callerStack(fn: Function): <E>(e: E) => E {
  const frames = framesAbove(fn);
  return (e) => withFrames(e, frames);
}

/** Gives `err` the stack that runs now, above `fn` (the async callers waiting on `fn`). */
// eslint-disable-next-line @typescript-eslint/no-unsafe-function-type
export function restackHere<E>(err: E, fn: Function): E {
  return err instanceof Error ? withFrames(err, framesAbove(fn)) : err;
}

/** Runs a public async operation with its errors carrying the caller's stack. */
// eslint-disable-next-line @typescript-eslint/no-unsafe-function-type
export async function api<T>(fn: Function, body: () => Promise<T>): Promise<T> {
  const restack = callerStack(fn);
  try {
    return await body();
  } catch (err) {
    throw restack(err);
  }
}
