// attachLoop options that change what the kernel does, checked in sysfs (read here, not
// through the library) and in LOOP_GET_STATUS64: directIo, partscan; and the shared attach's
// cross-process lock, held for real by another process (ERR_LOOP_LOCK_TIMEOUT).
import { expect } from 'chai';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ImgmountError, SystemError } from '../../../lib/errors';
import { attachLoop, LO_FLAGS_DIRECT_IO, LO_FLAGS_PARTSCAN } from '../../../lib/loop';
import { native } from '../../../lib/native/binding';
import { testImages } from '../../support/images';
import { requireKernel } from '../../support/kernel';
import { boundLoops } from '../../support/leaks';

function sysfs(dev: string, attr: string): string {
  return fs.readFileSync(`/sys/block/${path.basename(dev)}/${attr}`, 'utf8').trim();
}

function boundTo(file: string): string[] {
  return boundLoops().filter((l) => l.backingFile === file).map((l) => l.name);
}

describe('kernel: attachLoop directIo, partscan, and the shared-attach lock', function () {
  before(function () {
    requireKernel(this);
  });

  it('directIo: true binds with LO_FLAGS_DIRECT_IO (sysfs dio 1); the default does not', async () => {
    const img = testImages();
    {
      await using dev = await attachLoop(img.squashfs, { directIo: true });
      expect(sysfs(dev.path, 'loop/dio')).to.equal('1');
      expect(dev.directIo).to.equal(true);
      const st = await native((b) => b.loopGetStatus(dev.path));
      expect(st.flags & LO_FLAGS_DIRECT_IO).to.equal(LO_FLAGS_DIRECT_IO);
      // Reads through the device still return the image's bytes (squashfs magic "hsqs").
      const fd = fs.openSync(dev.path, 'r');
      try {
        const head = Buffer.alloc(4);
        fs.readSync(fd, head, 0, 4, 0);
        expect(head.toString('latin1')).to.equal('hsqs');
      } finally {
        fs.closeSync(fd);
      }
    }
    {
      await using dev = await attachLoop(img.squashfs);
      expect(sysfs(dev.path, 'loop/dio')).to.equal('0');
      expect(dev.directIo).to.equal(false);
      expect((await native((b) => b.loopGetStatus(dev.path))).flags & LO_FLAGS_DIRECT_IO).to.equal(0);
    }
    expect(boundTo(img.squashfs)).to.deep.equal([]);
  });

  it('partscan: true lets the block layer scan partitions (sysfs partscan 1, loop/partscan 1, LO_FLAGS_PARTSCAN); the default does not', async () => {
    // This kernel has no partition-table parser (CONFIG_MSDOS_PARTITION and _EFI_ unset), so
    // no loopNp1 can appear; the block layer's own partscan attribute (disk_has_partscan) is
    // what the loop flag changes, and is read apart from the loop driver's loop/partscan.
    const img = testImages();
    {
      await using dev = await attachLoop(img.squashfs, { partscan: true });
      expect([sysfs(dev.path, 'partscan'), sysfs(dev.path, 'loop/partscan')]).to.deep.equal(['1', '1']);
      expect((await native((b) => b.loopGetStatus(dev.path))).flags & LO_FLAGS_PARTSCAN).to.equal(LO_FLAGS_PARTSCAN);
    }
    {
      await using dev = await attachLoop(img.squashfs);
      expect([sysfs(dev.path, 'partscan'), sysfs(dev.path, 'loop/partscan')]).to.deep.equal(['0', '0']);
      expect((await native((b) => b.loopGetStatus(dev.path))).flags & LO_FLAGS_PARTSCAN).to.equal(0);
    }
    expect(boundTo(img.squashfs)).to.deep.equal([]);
  });

  it('a shared attach waits for the lock another process holds on /dev/loop-control, then gives up with ERR_LOOP_LOCK_TIMEOUT', async () => {
    const img = testImages();
    // util-linux flock(1) holds an exclusive flock while `cat` runs (until its stdin closes).
    const holder = spawn('flock', ['--exclusive', '/dev/loop-control', 'sh', '-c', 'echo locked; exec cat'], { stdio: ['pipe', 'pipe', 'inherit'] });
    const exited = new Promise<number | null>((r) => holder.once('exit', (code) => r(code)));
    try {
      await new Promise<void>((resolve, reject) => {
        holder.stdout!.once('data', () => resolve());
        void exited.then((code) => reject(new Error(`flock exited (${code}) before locking`)));
      });
      const err = await attachLoop(img.squashfs, { shared: true, sharedLockTimeoutMs: 200 }).catch((e: unknown) => e);
      expect(err).to.be.instanceOf(ImgmountError);
      expect((err as ImgmountError).code).to.equal('ERR_LOOP_LOCK_TIMEOUT');
      expect((err as ImgmountError).path).to.equal('/dev/loop-control');
      expect((err as ImgmountError).message).to.equal('another shared loop attach held /dev/loop-control for more than 200 ms');
      const cause = (err as ImgmountError).cause as SystemError;
      expect([cause.code, cause.syscall]).to.deep.equal(['EAGAIN', 'flock']);
      expect(boundTo(img.squashfs)).to.deep.equal([]);
    } finally {
      holder.stdin!.end();
      expect(await exited).to.equal(0);
    }
    // Once the holder is gone the same attach goes through.
    await using dev = await attachLoop(img.squashfs, { shared: true, sharedLockTimeoutMs: 200 });
    expect(boundTo(img.squashfs)).to.deep.equal([path.basename(dev.path)]);
  });
});
