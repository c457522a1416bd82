// Which partitions get 4 KiB loop blocks (lib/loop/block-size.ts): squashfs within 4 KiB
// bounds only; the rest keep the kernel's default (0).
import { expect } from 'chai';
import { SQUASHFS_LOOP_BLOCK_SIZE, loopBlockSizeFor } from '../../../lib/loop/block-size';

describe('loop: block size for a partition', () => {
  it('squashfs starting and ending on 4 KiB boundaries: 4096', () => {
    expect(SQUASHFS_LOOP_BLOCK_SIZE).to.equal(4096);
    expect(loopBlockSizeFor('squashfs', 45056, 745472)).to.equal(4096);
    expect(loopBlockSizeFor('squashfs', 0n, 4096n)).to.equal(4096);
    expect(loopBlockSizeFor('squashfs', 2n ** 40n, 2n ** 33n)).to.equal(4096);
  });

  it('a start or an end off the boundary, an unknown size (0: to the end of the file), or another filesystem: the default', () => {
    expect(loopBlockSizeFor('squashfs', 31, 4096 * 10), 'a legacy launch header before it').to.equal(0);
    expect(loopBlockSizeFor('squashfs', 4096, 4096 * 10 + 512), 'mksquashfs -nopad').to.equal(0);
    expect(loopBlockSizeFor('squashfs', 0, 0)).to.equal(0);
    expect(loopBlockSizeFor('ext3', 0, 4096 * 10), 'ext3 of 1 KiB blocks cannot mount from 4 KiB ones').to.equal(0);
    expect(loopBlockSizeFor('erofs', 0, 4096 * 10)).to.equal(0);
  });
});
