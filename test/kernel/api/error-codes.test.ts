// Error codes that no test had seen thrown, each brought about for real and checked by code,
// with nothing left mounted or bound (ERR_LOOP_LOCK_TIMEOUT: test/kernel/loop/options.test.ts):
//  - ERR_DRIVER_UNAVAILABLE: the kernel driver asked for what it cannot do (a gocryptfs
//    partition of a real gocryptfs SIF; a tmpfs for another mount namespace);
//  - ERR_MOUNT_FAILED: a partition mount asked for flags the new mount API cannot express.
import { expect } from 'chai';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { init } from '../../../lib';
import { KernelDriver, kernelMountFunc } from '../../../lib/drivers';
import { ImgmountError } from '../../../lib/errors';
import { GOCRYPTFSSQUASHFS } from '../../../lib/image/constants';
import { MS_NODEV, MS_NOSUID, MS_RDONLY, mountPartition } from '../../../lib/mount';
import { fixture } from '../../support/fixtures';
import { gocryptfsImage } from '../../support/gocryptfs-image';
import { testTmp } from '../../support/hooks';
import { mountDir } from '../../support/images';
import { requireKernel, startNamespaceHolder, stopHolder } from '../../support/kernel';
import { kernelMountsAt } from '../../support/kernel-mountinfo';
import { boundLoops, registerMountPoint } from '../../support/leaks';
import { rejection as rejectionOf } from '../../support/expect-error';

const rejection = (p: Promise<unknown>): Promise<ImgmountError> => rejectionOf(p, ImgmountError);

async function kernelDriver(): Promise<KernelDriver> {
  const d = new KernelDriver();
  await d.start({ sessionPath: '', usernsFd: -1, fuseFd: -1 });
  return d;
}

describe('kernel: error codes thrown for real', function () {
  before(function () {
    requireKernel(this);
  });

  it('ERR_DRIVER_UNAVAILABLE: the kernel driver asked to mount the gocryptfs partition of a real gocryptfs SIF', async () => {
    const g = await gocryptfsImage(path.join(testTmp, 'errcodes-gocryptfs'));
    await using img = await init(g.sif);
    const part = img.getRootFsPartition();
    expect(part.type).to.equal(GOCRYPTFSSQUASHFS);
    const dir = registerMountPoint(mountDir('err-gocryptfs'));
    const d = await kernelDriver();
    try {
      const err = await rejection(
        d.mount({ source: img.source, target: dir, filesystem: 'gocryptfs', flags: MS_RDONLY | MS_NOSUID | MS_NODEV, offset: part.offset, size: part.size, fsOptions: [], key: Buffer.from(g.key) }, kernelMountFunc),
      );
      expect(err.code).to.equal('ERR_DRIVER_UNAVAILABLE');
      expect(err.message).to.equal('the kernel driver cannot mount gocryptfs partitions; use the FUSE driver');
    } finally {
      await d.stop('');
    }
    expect(kernelMountsAt(dir)).to.deep.equal([]);
    expect(boundLoops().filter((l) => l.backingFile === g.sif)).to.deep.equal([]);
  });

  it("ERR_DRIVER_UNAVAILABLE: the kernel driver asked for a tmpfs in another process's mount namespace", async () => {
    const holder = await startNamespaceHolder(['-m', '--propagation', 'private']);
    const dir = mountDir('err-tmpfs-ns');
    const d = await kernelDriver();
    try {
      const err = await rejection(
        d.mount({ source: 'tmpfs', target: dir, filesystem: 'tmpfs', flags: MS_NOSUID | MS_NODEV, offset: 0, size: 0, fsOptions: ['size=1m'], namespace: { pid: holder.pid! } }, kernelMountFunc),
      );
      expect(err.code).to.equal('ERR_DRIVER_UNAVAILABLE');
      expect(err.message).to.equal('the kernel driver mounts tmpfs in this mount namespace only; move the result');
      expect(kernelMountsAt(dir, holder.pid!)).to.deep.equal([]);
      expect(kernelMountsAt(dir)).to.deep.equal([]);
    } finally {
      await d.stop('');
      await stopHolder(holder);
    }
  });

  it('ERR_MOUNT_FAILED: a partition mount with a flag the new mount API cannot express (shared propagation)', async () => {
    const img = path.join(testTmp, 'errcodes.sqfs');
    fs.copyFileSync(fixture('sq-gzip.sqfs'), img);
    const dir = registerMountPoint(mountDir('err-mount-failed'));
    const err = await rejection(mountPartition(img, dir, { fstype: 'squashfs', flags: ['shared'], api: 'new' }));
    expect(err.code).to.equal('ERR_MOUNT_FAILED');
    expect(err.message).to.equal('flags MS_RDONLY|MS_NOSUID|MS_NODEV|MS_SHARED cannot be used for a partition mount');
    expect(kernelMountsAt(dir)).to.deep.equal([]);
    expect(boundLoops().filter((l) => l.backingFile === img)).to.deep.equal([]);
  });
});
