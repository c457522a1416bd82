// The handle of a FUSE mount (FuseMounted): close() unmounts every layer, outermost first,
// stops the helpers, removes the session directory and (unless the caller keeps it) the mount
// record. With dieWithOwner an exit hook does the same, synchronously, for handles never closed.

import * as fs from 'node:fs';
import * as path from 'node:path';
import { MNT_DETACH } from '../../mount/flags';
import { binding } from '../../native/binding';
import { umountPinnedSync } from '../../path/pinned';
import { RetryableOnce } from '../../util/once';
import { removeMountRecord, removeSessionDir } from '../mount-record';
import type { MountedFilesystem } from '../types';
import type { StopTimings } from './helper-process';
import type { Layer, ServeContext } from './layer';
import { removeMountRecordSync } from './release';
import { releaseLayers } from './tear-down';

const euid = (): number => process.geteuid?.() ?? -1;

// ---------------------------------------------------------------------------------------
// Mounts whose helpers must not outlive this process (dieWithOwner): if it exits with them
// still mounted (close() never called), detach the mounts and SIGTERM the helpers,
// synchronously. (A kill -9 skips this; PR_SET_PDEATHSIG still ends the helpers.)

const live = new Set<FuseMounted>();
let exitHooked = false;

/** Released at process exit unless closed before (dieWithOwner). */
export function trackUntilClosed(m: FuseMounted): void {
  live.add(m);
  if (!exitHooked) {
    exitHooked = true;
    process.once('exit', () => {
      for (const mounted of live) mounted.releaseAtExit();
    });
  }
}

export class FuseMounted implements MountedFilesystem {
  readonly driver = 'fuse' as const;
  readonly loopDevice = null;
  readonly target: string;
  readonly fstype: string;
  readonly readOnly: boolean;
  readonly #layers: Layer[];
  readonly #sessionDir: string | undefined;
  /** The record this mount removes once released (not one a caller owns: recordMerge). */
  readonly #record: { target: string; mntns: string } | undefined;
  readonly #ctx: Pick<ServeContext, 'fusermount'>;
  readonly #timings: (layer: Layer) => StopTimings;
  readonly #release = new RetryableOnce();
  #closeCalled = false;

  constructor(init: {
    target: string;
    readOnly: boolean;
    layers: Layer[];
    sessionDir: string | undefined;
    record: { target: string; mntns: string } | undefined;
    ctx: Pick<ServeContext, 'fusermount'>;
    timings: (layer: Layer) => StopTimings;
  }) {
    this.target = init.target;
    this.readOnly = init.readOnly;
    this.#layers = init.layers;
    this.fstype = init.layers[init.layers.length - 1]!.fstype;
    this.#sessionDir = init.sessionDir;
    this.#record = init.record;
    this.#ctx = init.ctx;
    this.#timings = init.timings;
  }

  get helpers(): ReadonlyArray<{ program: string; pid: number }> {
    return this.#layers.map((l) => ({ program: l.helper.name, pid: l.helper.pid }));
  }

  /** True once close() was called (even if it failed: a retry is still possible). */
  get closed(): boolean {
    return this.#closeCalled;
  }

  /** A failed release may be retried (each step is idempotent). */
  close(): Promise<void> {
    this.#closeCalled = true;
    return this.#release.run(() => this.#releaseAll());
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  async #releaseAll(): Promise<void> {
    live.delete(this);
    const errors = await releaseLayers(this.#layers, this.#ctx, this.#timings);
    if (this.#sessionDir) await removeSessionDir(this.#sessionDir).catch((e: unknown) => errors.push(e));
    if (errors.length === 0 && this.#record) await removeMountRecord(this.#record.target, this.#record.mntns).catch((e: unknown) => errors.push(e));
    if (errors.length === 1) throw errors[0];
    if (errors.length > 1) throw new AggregateError(errors, `releasing the FUSE mount at ${this.target}: ${errors.length} step(s) failed`);
  }

  /** Process exit without close(): detach our mounts, SIGTERM the helpers (synchronous). */
  releaseAtExit(): void {
    for (const layer of [...this.#layers].reverse()) {
      if (!layer.namespace && euid() === 0) {
        try {
          if (layer.pinned) umountPinnedSync(layer.pinned, MNT_DETACH);
          else binding().umount(layer.target, MNT_DETACH, true);
        } catch {
          // not mounted any more
        }
      }
      layer.helper.kill('SIGTERM');
    }
    if (this.#sessionDir) {
      try {
        // Detached above, so its mount points are plain empty directories again.
        for (const e of fs.readdirSync(this.#sessionDir, { withFileTypes: true })) {
          const p = path.join(this.#sessionDir, e.name);
          if (e.isDirectory()) fs.rmdirSync(p);
          else fs.unlinkSync(p);
        }
        fs.rmdirSync(this.#sessionDir);
      } catch {
        // best effort at exit
      }
    }
    if (this.#record) removeMountRecordSync(this.#record.target, this.#record.mntns);
  }
}
