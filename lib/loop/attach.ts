// attachLoop() and detachLoop(): bind an image (or a byte range of it) to a loop device, and
// release one by path or number, as losetup does.
//
// The options are resolved into a loop context (./context.ts) and committed by the one setup
// step (./setup.ts) that the fused attach + mount of lib/mount and shared attaches go through
// too: which ioctls, the bounded retries, the device limit, the verification and the undo all
// live there.

import { throwIfAborted } from '../errors';
import { native } from '../native/binding';
import { checkSource, resolveLoopOptions, type AttachLoopOptions, type LoopSource } from './context';
import type { LoopDevice } from './device';
import { counters } from './internal';
import { signalOf } from '../util/abort';
import { api } from '../util/stack';
import { setupLoop } from './setup';
import { loopNumber } from './status';

/**
 * Attaches `source` to a loop device and returns its handle.
 *
 * A path is opened here (read-only unless `readOnly: false`) and closed with the handle; an
 * fd or an `{ fd, path }` object (an Image) stays the caller's. If `signal` fires while the
 * kernel is already binding, the device is detached again before the AbortError is thrown.
 */
export function attachLoop(source: LoopSource, options: AttachLoopOptions = {}): Promise<LoopDevice> {
  return api(attachLoop, () => attachLoopImpl(source, options));
}

async function attachLoopImpl(source: LoopSource, options: AttachLoopOptions = {}): Promise<LoopDevice> {
  checkSource(source);
  const o = resolveLoopOptions(options);
  throwIfAborted(o.signal);
  return setupLoop(source, o);
}

/**
 * Detaches a loop device by path or number, as `losetup -d` does: LOOP_CLR_FD, which the
 * kernel defers until the last user goes while the device is still mounted or open.
 * A device that is not bound fails with a SystemError ENXIO.
 */
export function detachLoop(device: number | string, options: { signal?: AbortSignal } = {}): Promise<void> {
  return api(detachLoop, () => detachLoopImpl(device, signalOf(options.signal)));
}

async function detachLoopImpl(device: number | string, signal: AbortSignal | undefined): Promise<void> {
  const n = loopNumber(device);
  const path = `/dev/loop${n}`;
  throwIfAborted(signal);
  const { fd } = await native((b) => b.loopOpen(path, true));
  if (signal?.aborted) {
    // Opened, not detached: close it and leave the device as it was.
    await native((b) => b.loopDetach(fd, false, path)).catch(() => undefined);
    throwIfAborted(signal);
  }
  await native((b) => b.loopDetach(fd, true, path));
  counters.detached++;
}
