// Squashfs partitions are served from loop devices of 4 KiB logical blocks where their bounds
// allow it (lib/loop/block-size.ts), the kernel's default elsewhere: checked in sysfs, and by
// reading every file of the image through both block sizes.
import { expect } from 'chai';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { init, mountPartition } from '../../../lib';
import { makeRootTree, mksquashfs } from '../../../scripts/make-fixtures';
import { testTmp } from '../../support/hooks';
import { busyboxSif, mountDir } from '../../support/images';
import { requireKernel } from '../../support/kernel';
import { boundLoops, registerMountPoint } from '../../support/leaks';

function logicalBlockSize(dev: string | null): number {
  expect(dev, 'the mount is on a loop device').to.be.a('string');
  return Number(fs.readFileSync(`/sys/block/${path.basename(dev!)}/queue/logical_block_size`, 'utf8'));
}

/** Every entry under `dir`: a regular file's SHA-256, a symlink's target, or 'dir'. */
function contents(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (rel: string) => {
    for (const name of fs.readdirSync(path.join(dir, rel)).sort()) {
      const r = path.join(rel, name);
      const p = path.join(dir, r);
      const st = fs.lstatSync(p);
      if (st.isDirectory()) {
        out[r] = 'dir';
        walk(r);
      } else if (st.isSymbolicLink()) out[r] = `-> ${fs.readlinkSync(p)}`;
      else if (st.isFile()) out[r] = crypto.createHash('sha256').update(fs.readFileSync(p)).digest('hex');
      else out[r] = 'special';
    }
  };
  walk('');
  return out;
}

describe('kernel: loop block size of squashfs partitions', function () {
  before(function () {
    requireKernel(this);
  });

  it('a squashfs on 4 KiB bounds (the Apptainer-built busybox SIF) gets 4 KiB loop blocks, and reads the same bytes as through 512', async () => {
    await using img = await init(busyboxSif.path);
    const part = img.getRootFsPartition();
    expect(part.offset % 4096, 'the partition starts on a 4 KiB boundary').to.equal(0);
    expect(part.size % 4096, 'and ends on one').to.equal(0);
    const dir = registerMountPoint(mountDir('block-size-sif'));

    const r = await img.root(dir);
    let viaRoot: Record<string, string>;
    try {
      expect(logicalBlockSize(r.mounts[0]!.loopDevice)).to.equal(4096);
      viaRoot = contents(dir);
    } finally {
      await r.close();
    }

    const m = await mountPartition(img, dir, { fstype: 'squashfs', offset: part.offset, sizeLimit: part.size, loop: { blockSize: 512 } });
    let via512: Record<string, string>;
    try {
      expect(logicalBlockSize(m.loopDevice), 'loop.blockSize given is kept').to.equal(512);
      via512 = contents(dir);
    } finally {
      await m.unmount();
    }
    expect(Object.keys(viaRoot).length, 'the image has files to compare').to.be.greaterThan(20);
    expect(viaRoot).to.deep.equal(via512);
    expect(boundLoops().filter((l) => l.backingFile === img.path)).to.deep.equal([]);
  });

  it('a squashfs that does not end on a 4 KiB boundary keeps the kernel default and reads whole, to its last byte', async () => {
    const tree = path.join(testTmp, 'block-size-tree');
    makeRootTree(tree);
    // The last file makes the image end mid-block (its size is fixed: fixed content and times).
    fs.writeFileSync(path.join(tree, 'data', 'tail.bin'), crypto.createHash('sha512').update('tail').digest().subarray(0, 37).toString('hex').repeat(111));
    const file = path.join(testTmp, 'block-size-nopad.sqfs');
    mksquashfs(tree, file, 'gzip', ['-nopad']);
    // Whole 512-byte sectors (the kernel driver's condition: a loop device shows no partial
    // sector), not whole 4 KiB blocks.
    fs.truncateSync(file, Math.ceil(fs.statSync(file).size / 512) * 512);
    expect(fs.statSync(file).size % 4096, 'the image ends mid-block').to.not.equal(0);

    await using img = await init(file);
    const dir = registerMountPoint(mountDir('block-size-nopad'));
    const r = await img.root(dir);
    try {
      expect(r.mounts.map((m) => m.driver)).to.deep.equal(['kernel']);
      expect(logicalBlockSize(r.mounts[0]!.loopDevice)).to.equal(512);
      expect(contents(dir)).to.deep.equal(contents(tree));
    } finally {
      await r.close();
    }
  });
});
