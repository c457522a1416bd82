// The logical block size of the loop device a partition is mounted from.
//
// A squashfs reads its device in blocks of max(1 KiB, the device's logical block size): on the
// kernel's default 512-byte loop device every metadata table and every first lookup is a run of
// 1 KiB reads, each a round trip through the loop device's worker thread. With 4 KiB blocks there
// are a quarter as many (measured on the 2-CPU VM, ../shared/bench/loopmount.c with only the
// block size changed: mount(2) 697 -> 223 us, the first stat inside 187 -> 55 us, the whole cycle
// 608 -> 315 us). The data read is the same bytes: squashfs addresses its image in bytes.
//
// Only where nothing can be lost: a loop device's size is a whole number of its blocks, so a
// partition that does not start and end on a 4 KiB boundary (mksquashfs pads to 4 KiB unless
// told -nopad) keeps the default, and so does every other filesystem (an ext3 of 1 KiB blocks
// cannot be mounted from a device of 4 KiB blocks).

/** The block size asked for where it is known to be safe and faster. */
export const SQUASHFS_LOOP_BLOCK_SIZE = 4096;

/** The loop device block size for a partition of `fstype` at `offset`, `size` bytes: 0 is the kernel's default. */
export function loopBlockSizeFor(fstype: string, offset: number | bigint, size: number | bigint): number {
  if (fstype !== 'squashfs') return 0;
  const b = BigInt(SQUASHFS_LOOP_BLOCK_SIZE);
  const off = BigInt(offset);
  const len = BigInt(size);
  return len > 0n && off % b === 0n && len % b === 0n ? SQUASHFS_LOOP_BLOCK_SIZE : 0;
}
