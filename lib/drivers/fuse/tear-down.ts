// Tear-down: unmounting a layer (bring-up.ts) where it is and stopping its helper, in our
// process. A mount another process recorded is released from its record (release.ts).

import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { ImgmountError, hasErrorCode } from '../../errors';
import { debug } from '../../util/debug';
import { MNT_DETACH } from '../../mount/flags';
import { umount } from '../../mount/mount';
import { unmountInNamespace } from '../../mount/in-namespace';
import type { PinnedDir } from '../../path/pinned';
import type { StopTimings } from './helper-process';
import type { Layer, ServeContext } from './layer';

const euid = (): number => process.geteuid?.() ?? -1;

const execFileAsync = promisify(execFile);

/** umount2 in our namespace (a pinned mount point, or a path of ours), retrying while busy (a helper above may still be exiting), then detaching. */
export async function unmountOwn(target: string | PinnedDir, busyRetries = 6, release = false): Promise<void> {
  try {
    // release: a pinned mount point is closed in the unmount's hop (the mount is gone with it).
    await umount(target, 0, { busyRetries, ...(release ? { releasePinned: true } : {}) });
  } catch (err) {
    if (hasErrorCode(err, 'ERR_NOT_MOUNTED')) return;
    if (hasErrorCode(err, 'EBUSY')) {
      debug('fuse: %s still busy: detaching it', typeof target === 'string' ? target : target.path);
      await umount(target, MNT_DETACH);
      return;
    }
    throw err;
  }
}

/** Unmounts a layer where it is: our namespace (umount2, or fusermount3 -u without privilege) or the helper's. */
export async function unmountLayer(layer: Pick<Layer, 'target' | 'namespace' | 'helper' | 'pinned' | 'mountId'>, ctx: Pick<ServeContext, 'fusermount'>): Promise<void> {
  if (layer.namespace) {
    try {
      await unmountInNamespace(layer.namespace, layer.target, 0, layer.mountId !== undefined ? { mountId: layer.mountId } : {});
    } catch (err) {
      if (hasErrorCode(err, 'ERR_NOT_MOUNTED')) return;
      // The namespace is gone (its last process exited): so is the mount.
      if (hasErrorCode(err, 'ERR_NAMESPACE')) return;
      if (hasErrorCode(err, 'EBUSY')) return unmountInNamespace(layer.namespace, layer.target, MNT_DETACH);
      throw err;
    }
    return;
  }
  if (layer.pinned) {
    if (!layer.pinned.closed) await unmountOwn(layer.pinned, 6, true);
    await layer.pinned.close();
    return;
  }
  if (euid() === 0 || !ctx.fusermount) return unmountOwn(layer.target);
  try {
    await execFileAsync(ctx.fusermount, ['-u', layer.target], { timeout: 10_000 });
  } catch (err) {
    const text = `${(err as { stderr?: string }).stderr ?? ''}`;
    if (/not (found in|mounted)|Invalid argument/.test(text)) return;
    if (/busy/i.test(text)) {
      await execFileAsync(ctx.fusermount, ['-u', '-z', layer.target], { timeout: 10_000 });
      return;
    }
    throw new ImgmountError('ERR_MOUNT_FAILED', `fusermount3 -u ${layer.target} failed: ${text.trim() || (err as Error).message}`, { cause: err });
  }
}

/**
 * Unmounts a layer and stops its helper (bounded escalation). Returns the errors met (empty
 * on success); a helper exiting non-zero after its unmount is one (e.g. fuse2fs failing to
 * write back), its output included.
 */
export async function releaseLayer(layer: Layer, ctx: Pick<ServeContext, 'fusermount'>, timings: StopTimings): Promise<unknown[]> {
  const errors: unknown[] = [];
  await unmountLayer(layer, ctx).catch((e: unknown) => errors.push(e));
  try {
    const exit = await layer.helper.stop(timings);
    if (exit.signal === null && exit.code !== 0 && exit.code !== null)
      errors.push(
        new ImgmountError('ERR_HELPER_FAILED', `${layer.helper.name} serving ${layer.target} exited with status ${exit.code}${exit.output ? `: ${exit.output}` : ''}`, {
          details: { program: layer.helper.name, target: layer.target, code: exit.code, output: exit.output },
        }),
      );
  } catch (e) {
    errors.push(e);
  }
  return errors;
}


/** Releases layers in reverse order (the outermost first); returns every error met. */
export async function releaseLayers(layers: readonly Layer[], ctx: Pick<ServeContext, 'fusermount'>, timings: (l: Layer) => StopTimings): Promise<unknown[]> {
  const errors: unknown[] = [];
  for (const layer of [...layers].reverse()) errors.push(...(await releaseLayer(layer, ctx, timings(layer))));
  return errors;
}

/**
 * How a layer's helper is stopped after its unmount: as configured (FuseDriverOptions.stop),
 * except that a writable fuse2fs writes back on its way out and gets the mount timeout as its
 * grace period, not 1 s.
 */
export function layerStopTimings(stop: StopTimings | undefined, timeoutMs: number, layer: Pick<Layer, 'readOnly'>): StopTimings {
  const t = { ...stop };
  if (!layer.readOnly) t.graceMs = Math.max(t.graceMs ?? 1000, timeoutMs);
  return t;
}
