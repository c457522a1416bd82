// Turning a MountParams source into what the loop layer and FUSE helpers take: Apptainer
// passes an image as `/proc/self/fd/N`, and that open file (the one detection read) is what
// must be used, never the path it once had.

import * as fs from 'node:fs/promises';
import type { LoopSource } from '../loop/context';

const PROC_FD = /^\/proc\/self\/fd\/(\d+)$/;

/**
 * `/proc/self/fd/N` -> { fd: N, path } (path for messages only: `knownPath` when the caller
 * has it, else where the kernel says the fd leads); anything else stays a path.
 */
export async function loopSourceOf(source: string, knownPath?: string): Promise<LoopSource> {
  const m = PROC_FD.exec(source);
  if (!m) return source;
  const fd = Number(m[1]);
  if (knownPath !== undefined) return { fd, path: knownPath };
  const path = await fs.readlink(source).catch(() => source);
  return { fd, path: path.replace(/ \(deleted\)$/, '') };
}

/** The fd behind a `/proc/self/fd/N` source, or undefined for a plain path. */
export function sourceFd(source: string): number | undefined {
  const m = PROC_FD.exec(source);
  return m ? Number(m[1]) : undefined;
}
