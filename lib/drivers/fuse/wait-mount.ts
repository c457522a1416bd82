// Waiting for a FUSE helper's own mount to appear, event-driven: the kernel flags every change
// of a mount table on open /proc/<pid>/mountinfo files (POLLPRI), and the addon's
// MountTableWatcher turns that into a callback on the event loop. So: open the table (of the
// helper's mount namespace), watch it, read it once, and read it again after each change, until
// the target shows up, the helper exits (`until`), the timeout passes or the caller aborts.
// No sleeps, no pool thread held while waiting (Apptainer polled every 25 ms).

import * as fsp from 'node:fs/promises';
import { abortError } from '../../util/abort';
import { debug } from '../../util/debug';
import { findMounts, parseMountInfo, type MountInfoEntry } from '../../mount/mountinfo';
import { binding } from '../../native/binding';

export const DEFAULT_MOUNT_TIMEOUT_MS = 10_000;

export type MountWait =
  | { status: 'mounted'; entry: MountInfoEntry; ms: number }
  | { status: 'stopped'; ms: number }
  | { status: 'timeout'; ms: number };

export interface WaitForMountOptions {
  /** Whose mount namespace to watch (the helper's pid, or 'self'). */
  pid: number | 'self';
  /** Mount point as that namespace's mountinfo shows it (absolute, no symlinks). */
  target: string;
  /** Only an entry that passes counts (e.g. a new fuse.* mount); any if omitted. */
  accept?: (entry: MountInfoEntry) => boolean;
  timeoutMs?: number;
  /** Stop waiting when this settles (the helper exited). */
  until?: Promise<unknown>;
  signal?: AbortSignal;
}

async function readTable(fh: fsp.FileHandle): Promise<string> {
  const chunks: Buffer[] = [];
  let pos = 0;
  for (;;) {
    const buf = Buffer.allocUnsafe(64 * 1024);
    const { bytesRead } = await fh.read(buf, 0, buf.length, pos);
    if (bytesRead === 0) break;
    chunks.push(buf.subarray(0, bytesRead));
    pos += bytesRead;
  }
  return Buffer.concat(chunks).toString('utf8');
}

/** The newest entry at `target` (the one on top), if it passes `accept`. */
function topEntry(text: string, o: WaitForMountOptions): MountInfoEntry | undefined {
  const at = findMounts(parseMountInfo(text), { mountPoint: o.target });
  const top = at[at.length - 1];
  return top && (!o.accept || o.accept(top)) ? top : undefined;
}

/**
 * Waits until `target` is a mount point in the mount namespace of `pid`. Resolves with what
 * happened ('mounted', 'stopped' when `until` settled first, 'timeout'); rejects with an
 * AbortError if `signal` fires, or with the error of opening/reading the table.
 */
export async function waitForMount(o: WaitForMountOptions): Promise<MountWait> {
  const started = Date.now();
  const ms = (): number => Date.now() - started;
  if (o.signal?.aborted) throw abortError(o.signal);
  const fh = await fsp.open(`/proc/${o.pid}/mountinfo`, 'r');
  let watcher: { close(): void } | undefined;
  let timer: NodeJS.Timeout | undefined;
  let wake: (() => void) | undefined;
  let changed = true; // read once before the first event
  let outcome: MountWait | Error | undefined;
  const settle = (r: MountWait | Error): void => {
    outcome ??= r;
    wake?.();
  };
  const onAbort = (): void => settle(abortError(o.signal!));
  try {
    watcher = new (binding().MountTableWatcher)(fh.fd, (err) => {
      if (err) debug('fuse: mountinfo watch error %s', err);
      changed = true;
      wake?.();
    });
    timer = setTimeout(() => settle({ status: 'timeout', ms: ms() }), o.timeoutMs ?? DEFAULT_MOUNT_TIMEOUT_MS);
    o.signal?.addEventListener('abort', onAbort, { once: true });
    if (o.signal?.aborted) onAbort();
    o.until?.then(
      () => settle({ status: 'stopped', ms: ms() }),
      () => settle({ status: 'stopped', ms: ms() }),
    );
    for (;;) {
      if (changed && outcome === undefined) {
        changed = false;
        const entry = topEntry(await readTable(fh), o);
        if (entry) settle({ status: 'mounted', entry, ms: ms() });
      }
      if (outcome !== undefined) break;
      if (!changed) await new Promise<void>((r) => (wake = r));
      wake = undefined;
    }
    if (outcome instanceof Error) throw outcome;
    return outcome;
  } finally {
    clearTimeout(timer);
    o.signal?.removeEventListener('abort', onAbort);
    watcher?.close();
    await fh.close();
  }
}
