// Shared loop devices (Apptainer's `shared loop devices`, util-linux's --nooverlap): reuse a
// device already bound to the same file (device + inode), offset, size limit and read-only
// flag instead of binding a second one over the same bytes.
//
// Race-free between processes: the scan and, when nothing matches, the new attach run under
// an exclusive flock on /dev/loop-control (taken without blocking a pool thread: LOCK_NB,
// polled with back-off), so two shared attaches of one image cannot both bind a new device.
// A candidate is opened first and then checked with LOOP_GET_STATUS64 on that fd: holding the
// fd keeps the device from being auto-cleared or rebound under us, and a device that changed
// between the sysfs scan and the open simply fails the check.

import * as fs from 'node:fs';
import { closeFd, fstatFdBig, openFd } from '../io/fd';
import { ImgmountError } from '../errors';
import { native, type NativeLoopInfo } from '../native/binding';
import { LO_FLAGS_AUTOCLEAR, LO_FLAGS_PARTSCAN } from './constants';
import type { LoopBacking, LoopContext, ResolvedLoopOptions } from './context';
import type { LoopDeviceInit } from './device';
import { expectationOf, statusMismatches } from './expectation';
import { counters } from './internal';
import { sleep } from '../util/abort';
import { backoffMs } from '../util/backoff';
import { toBig } from '../util/bigint';
import { debug } from '../util/debug';
import { KeyedMutex } from '../util/keyed-mutex';
import { isSystemError } from '../util/system-error';
import { listLoopDevices } from './status';


const LOCK_PATH = '/dev/loop-control';
const inProcess = new KeyedMutex();

async function lockExclusive(fd: number, o: ResolvedLoopOptions): Promise<void> {
  const deadline = Date.now() + o.sharedLockTimeoutMs;
  for (let n = 0; ; n++) {
    try {
      await native((b) => b.flock(fd, 'ex', true));
      return;
    } catch (err) {
      if (!isSystemError(err, 'EWOULDBLOCK') && !isSystemError(err, 'EAGAIN')) throw err;
      if (Date.now() >= deadline)
        throw new ImgmountError('ERR_LOOP_LOCK_TIMEOUT', `another shared loop attach held ${LOCK_PATH} for more than ${o.sharedLockTimeoutMs} ms`, {
          cause: err,
          path: LOCK_PATH,
        });
      await sleep(backoffMs(n, 1, 50), o.signal);
    }
  }
}

/** An existing device that matches (of `only`, else of all bound ones), opened and verified; null if there is none. */
async function findShared(
  src: LoopBacking,
  dev: bigint,
  ino: bigint,
  o: ResolvedLoopOptions,
  only?: Array<{ path: string; number: number }>,
): Promise<LoopDeviceInit | null> {
  const candidates =
    only ??
    (await listLoopDevices()).filter((s) => toBig(s.offset) === o.offset && toBig(s.sizeLimit) === o.sizeLimit && s.readOnly === o.readOnly);
  const want = { ...expectationOf(o, dev, ino), autoclear: false, partscan: false };
  for (const c of candidates) {
    let opened: { fd: number; status: NativeLoopInfo };
    try {
      opened = await native((b) => b.loopOpen(c.path, o.readOnly));
    } catch (err) {
      debug('shared scan: %s skipped (%s)', c.path, (err as Error).message);
      continue;
    }
    // Autoclear and partscan are the first attacher's business; everything else must match.
    const bad = statusMismatches({ ...opened.status, flags: opened.status.flags & ~(LO_FLAGS_AUTOCLEAR | LO_FLAGS_PARTSCAN) }, want);
    if (bad.length === 0) {
      counters.reused++;
      debug('shared: reusing %s for %s', c.path, src.path);
      return { fd: opened.fd, number: c.number, path: c.path, status: opened.status, method: 'shared', owner: false, backingFile: src.path };
    }
    const fd = opened.fd;
    await native((b) => b.loopDetach(fd, false, c.path)).catch(() => undefined);
  }
  return null;
}

/**
 * The device this process last shared for a (file, offset, size, read-only) key: tried first,
 * opened and verified like a scanned candidate, so that many roots of one image do not each
 * take the lock and scan every loop device. Anything else (it was released, rebound) falls
 * back to the locked scan.
 */
const known = new Map<string, string>();

function shareKey(dev: bigint, ino: bigint, o: ResolvedLoopOptions): string {
  return `${dev}:${ino}:${o.offset}:${o.sizeLimit}:${o.readOnly}`;
}

/** The known device for `key`, opened and checked; null (and forgotten) if it no longer matches. */
async function reuseKnown(key: string, src: LoopBacking, dev: bigint, ino: bigint, o: ResolvedLoopOptions): Promise<LoopDeviceInit | null> {
  const devPath = known.get(key);
  if (devPath === undefined) return null;
  const found = await findShared(src, dev, ino, o, [{ path: devPath, number: Number(devPath.replace(/^\/dev\/loop/, '')) }]);
  if (!found) known.delete(key);
  return found;
}

/**
 * A shared attach: reuse a matching device, or bind a new one with `bindNew` (the commit
 * step's, ./setup.ts), under the cross-process lock. The backing file must be open (its fd is
 * fstat'ed for the match).
 */
export async function attachShared(ctx: LoopContext, bindNew: () => Promise<LoopDeviceInit>): Promise<LoopDeviceInit> {
  const { backing: src, o } = ctx;
  const st = await fstatFdBig(src.fd);
  const key = shareKey(st.dev, st.ino, o);
  const quick = await reuseKnown(key, src, st.dev, st.ino, o);
  if (quick) return quick;
  return inProcess.run('shared', async () => {
    // Another attach of this process may have bound it while this one waited.
    const again = await reuseKnown(key, src, st.dev, st.ino, o);
    if (again) return again;
    const lockFd = await openFd(LOCK_PATH, fs.constants.O_RDONLY);
    try {
      await lockExclusive(lockFd, o);
      const got = (await findShared(src, st.dev, st.ino, o)) ?? (await bindNew());
      known.set(key, got.path);
      return got;
    } finally {
      // Closing the fd drops the flock.
      await closeFd(lockFd).catch(() => undefined);
    }
  });
}
