// Counting thread-pool hops: every request an operation sends to libuv's pool (fs requests,
// FileHandle closes, zlib) or to the addon's own (its calls, "imgmount:*"; native/work-pool.cc)
// and every process it spawns, seen as async resources created while it runs. A hop costs a wake-up of a pool thread and of the
// event loop (tens of microseconds, more on a loaded machine): what the hot path is judged by
// without timing anything.
import { createHook } from 'node:async_hooks';

/** Async resource types that are a round trip through the pool (or a process). */
// (Our event-loop watchers, imgmount:*.watch, are uv_poll handles: no pool trip.)
const HOP_TYPES = /^(FSREQCALLBACK|FSREQPROMISE|FILEHANDLECLOSEREQ|STATWATCHER|ZLIB|PBKDF2REQUEST|SCRYPTREQUEST|GETADDRINFOREQWRAP|imgmount:(?!.*\.watch$).*)$/;
/** A process started: by child_process (a fork of Node), or by our posix_spawn (a pool trip too). */
const SPAWN_TYPES = /^(PROCESSWRAP|imgmount:spawn\.program)$/;

export interface HopCount {
  /** Pool round trips. */
  hops: number;
  /** Child processes started. */
  spawns: number;
  /** What they were: "TYPE at file:line" of the library frame that asked, with counts. */
  sites: string[];
}

function site(type: string): string {
  const frame = new Error().stack!.split('\n').find((l) => l.includes('/dist/lib/'));
  return `${type} at ${frame ? frame.trim().replace(/^at .*?\(?\/.*?dist\/lib\//, '').replace(/\)$/, '') : '?'}`;
}

/** Runs `fn` and counts the hops and spawns it makes (nothing else may run meanwhile). */
export async function countHops<T>(fn: () => Promise<T>): Promise<{ value: T; count: HopCount }> {
  const count: HopCount = { hops: 0, spawns: 0, sites: [] };
  const sites = new Map<string, number>();
  const hook = createHook({
    init(_id, type) {
      const hop = HOP_TYPES.test(type);
      const spawned = SPAWN_TYPES.test(type);
      if (!hop && !spawned) return;
      if (hop) count.hops++;
      if (spawned) count.spawns++;
      const s = site(type);
      sites.set(s, (sites.get(s) ?? 0) + 1);
    },
  });
  hook.enable();
  let value: T;
  try {
    value = await fn();
  } finally {
    hook.disable();
  }
  count.sites = [...sites].map(([s, n]) => `${n} x ${s}`);
  return { value, count };
}
