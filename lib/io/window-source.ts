// A ByteSource over an fd whose first bytes were read already (native openImage reads them in
// the same hop as the open): reads inside that window cost no hop, and the ranges a caller
// announces with prefetch() are read in one batched hop (native preadRanges). Anything else
// is a pread, as fdSource does. Detection thus reads a typical SIF (header, descriptor table
// and partition superblocks within the first 64 KiB) without a hop of its own.

import { native } from '../native/binding';
import { preadFully, type ByteSource } from './byte-source';

/** How many prefetched ranges are kept (a SIF lists at most MAX_DESCRIPTORS partitions). */
const MAX_PREFETCHED = 1024;

export interface WindowSource extends ByteSource {
  /** The bytes at [offset, offset + length) if the window or a prefetch holds them (no read). */
  cached(offset: number, length: number): Buffer | undefined;
}

export function windowSource(fd: number, size: number, window: Buffer): WindowSource {
  const prefetched = new Map<number, Buffer>();
  const clamp = (offset: number, length: number) => Math.max(0, Math.min(length, size - offset));
  const cached = (offset: number, length: number): Buffer | undefined => {
    const len = clamp(offset, length);
    if (offset + len <= window.length) return window.subarray(offset, offset + len);
    const hit = prefetched.get(offset);
    return hit && hit.length >= len ? hit.subarray(0, len) : undefined;
  };
  return {
    size,
    cached,
    async read(offset, length) {
      return cached(offset, length) ?? preadFully(fd, offset, clamp(offset, length));
    },
    async prefetch(ranges) {
      const wanted = ranges
        .map(([offset, length]) => [offset, clamp(offset, length)] as [number, number])
        .filter(([offset, len]) => len > 0 && offset + len > window.length && !((prefetched.get(offset)?.length ?? -1) >= len))
        .slice(0, MAX_PREFETCHED - prefetched.size);
      if (wanted.length === 0) return;
      const got = await native((b) => b.preadRanges(fd, wanted));
      got.forEach((buf, i) => prefetched.set(wanted[i]![0], buf));
    },
  };
}
