// Driver selection and every image format by each driver that supports it, through the
// public entry points (mountImage, root, Image.root) rather than the drivers directly.
import { expect } from 'chai';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ImgmountError, RootFs, init, type Image } from '../../lib';
import { findMountRecord } from '../../lib/drivers/mount-record';
import { chooseDriver } from '../../lib/drivers/select';
import { capabilities, findMounts, readMountInfo } from '../../lib/mount';
import { mountImage, releaseMount, root } from '../../lib/root';
import { fixture } from '../support/fixtures';
import { gocryptfsImage } from '../support/gocryptfs-image';
import { testTmp } from '../support/hooks';
import { mountDir } from '../support/images';
import { requireKernel } from '../support/kernel';
import { helperProcesses, registerMountPoint } from '../support/leaks';

async function entry(dir: string) {
  return findMounts(await readMountInfo(), { mountPoint: dir })[0];
}

async function choice(file: string, policy: Parameters<typeof chooseDriver>[2] = {}) {
  await using img = await init(fixture(file));
  return await chooseDriver(img, img.getRootFsPartition(), policy);
}

async function errorOf(p: Promise<unknown>): Promise<ImgmountError> {
  try {
    await p;
  } catch (err) {
    return err as ImgmountError;
  }
  throw new Error('expected a rejection');
}

describe('kernel: automatic driver selection', function () {
  before(function () {
    requireKernel(this);
  });

  it('a squashfs whose last bytes fall in a partial 512-byte sector goes to FUSE (a loop device cannot show them)', async () => {
    const c = await choice('sq-tiny-nopad.sqfs');
    expect(c.driver).to.equal('fuse');
    expect(c.reason).to.match(/whole 512-byte sectors/);
  });

  it('as root the kernel mounts what it can read', async () => {
    expect(await choice('sq-zstd.sqfs')).to.deep.include({ driver: 'kernel', filesystem: 'squashfs' });
    expect(await choice('ext3.img')).to.deep.include({ driver: 'kernel', filesystem: 'ext3' });
  });

  it('without privilege FUSE mounts where /dev/fuse is open to users, and the reason says why', async () => {
    const c = await choice('sq-gzip.sqfs', { privileged: false, fuseUnprivileged: true });
    expect(c.driver).to.equal('fuse');
    expect(c.reason).to.match(/squashfuse.*since mounting needs root/);
    expect((await choice('ext3.img', { privileged: false, fuseUnprivileged: true })).driver).to.equal('fuse');
    const closed = await errorOf(choice('sq-gzip.sqfs', { privileged: false, fuseUnprivileged: false }));
    expect(closed.code).to.equal('ERR_NO_DRIVER');
    expect(closed.message).to.match(/kernel: mounting needs root \(CAP_SYS_ADMIN\); FUSE: \/dev\/fuse is not open to unprivileged users here/);
  });

  it("FUSE takes over a compression the kernel's squashfs lacks (the kernel set is overridable)", async () => {
    const c = await choice('sq-zstd.sqfs', { kernelSquashfsCompressions: ['gzip', 'xz'] });
    expect(c.driver).to.equal('fuse');
    expect(c.reason).to.match(/cannot decompress zstd \(it reads gzip, xz\)/);
  });

  it('the operator policy keeps untrusted images away from the kernel (allow setuid-mount = no)', async () => {
    expect((await choice('sq-gzip.sqfs', { allowKernelSquashfs: false })).driver).to.equal('fuse');
    expect((await choice('ext3.img', { allowKernelExtfs: false })).driver).to.equal('fuse');
    const forced = await errorOf(choice('sq-gzip.sqfs', { allowKernelSquashfs: false, driver: 'kernel' }));
    expect(forced.code).to.equal('ERR_NO_DRIVER');
    expect(forced.message).to.match(/policy forbids kernel mounts of squashfs images/);
  });

  it('legacy lzma: the error names the compression and what would read it', async () => {
    const err = await errorOf(choice('sq-lzma.sqfs'));
    expect(err.code).to.equal('ERR_MOUNT_UNSUPPORTED_COMPRESSION');
    expect(err.message).to.match(/compressed with legacy lzma, which nothing here reads: the kernel's squashfs cannot decompress lzma .*squashfuse cannot decompress lzma .*mksquashfs -comp xz/);
  });

  it('gocryptfs partitions go to FUSE; encrypted (LUKS) and raw ones get clear errors', async () => {
    expect((await choice('sif-gocryptfs.sif')).driver).to.equal('fuse');
    const luks = await errorOf(choice('sif-encrypted.sif'));
    expect(luks.code).to.equal('ERR_ENCRYPTION_UNSUPPORTED');
    expect(luks.message).to.match(/device-mapper/);
    expect((await errorOf(choice('sif-raw.sif'))).code).to.equal('ERR_MOUNT_UNSUPPORTED_FS');
  });
});

describe('kernel: every format by each driver that supports it', function () {
  before(function () {
    requireKernel(this);
  });

  const cases: Array<[string, string, Array<'kernel' | 'fuse'>]> = [
    ['sq-gzip.sqfs', RootFs, ['kernel', 'fuse']],
    ['sq-lzo.sqfs', RootFs, ['kernel', 'fuse']],
    ['sq-lz4.sqfs', RootFs, ['kernel', 'fuse']],
    ['sq-xz.sqfs', RootFs, ['kernel', 'fuse']],
    ['sq-zstd.sqfs', RootFs, ['kernel', 'fuse']],
    ['hdr-lf.sqfs', RootFs, ['kernel', 'fuse']],
    ['hdr-crlf.sqfs', RootFs, ['kernel', 'fuse']],
    ['sq-tiny-nopad.sqfs', RootFs, ['fuse']], // 156 bytes: a loop device shows whole 512-byte sectors only
    ['ext3.img', RootFs, ['kernel', 'fuse']],
    ['hdr-lf.ext3', RootFs, ['kernel', 'fuse']],
    ['sif-basic.sif', RootFs, ['kernel', 'fuse']],
    ['sif-ext3-root.sif', RootFs, ['kernel', 'fuse']],
    ['sif-data.sif', 'data', ['kernel', 'fuse']],
    ['sif-data.sif', 'scratch', ['kernel', 'fuse']],
  ];
  const emptyFs: Record<string, string[]> = { 'sq-tiny-nopad.sqfs': [], 'sif-data.sif:scratch': ['lost+found'] };
  for (const [file, partName, drivers] of cases) {
    for (const driver of drivers) {
      it(`${file} partition "${partName}" by the ${driver} driver`, async () => {
        await using img = await init(fixture(file));
        const partition = img.partitions.find((p) => p.name === partName)!;
        const dir = registerMountPoint(mountDir(`fmt-${driver}`));
        const m = await mountImage(img, dir, { driver, partition });
        try {
          expect(m.driver).to.equal(driver);
          const e = (await entry(dir))!;
          expect(e.mountOptions).to.include.members(['ro', 'nosuid', 'nodev']);
          expect(e.fstype).to.match(driver === 'kernel' ? /^(squashfs|ext3)$/ : /^fuse\./);
          const empty = emptyFs[file] ?? emptyFs[`${file}:${partName}`];
          if (empty) {
            expect(fs.readdirSync(dir).sort()).to.deep.equal(empty);
          } else {
            expect(fs.readdirSync(dir)).to.include.members(['etc', 'bin']);
            expect(fs.readFileSync(path.join(dir, 'etc/hello.txt'), 'utf8')).to.equal('hello from imgmount\n');
          }
        } finally {
          await m.close();
        }
        expect(await entry(dir)).to.equal(undefined);
      });
    }
  }
});

describe('kernel: roots on FUSE', function () {
  before(function () {
    requireKernel(this);
  });

  it('root() by the FUSE driver with a tmpfs overlay (kernel overlayfs over a squashfuse lower)', async () => {
    await using img = await init(fixture('sif-basic.sif'));
    const dir = registerMountPoint(mountDir('fuse-root'));
    const r = await root(img, dir, { driver: 'fuse', writableTmpfs: true });
    expect(r.mounts.map((m) => m.driver)).to.include('fuse');
    fs.writeFileSync(path.join(dir, 'etc/x.txt'), 'x');
    expect(fs.readFileSync(path.join(dir, 'etc/hello.txt'), 'utf8')).to.equal('hello from imgmount\n');
    await r.close();
    expect(await entry(dir)).to.equal(undefined);
  });

  it('without the right to mount, /dev/fuse decides; FUSE roots use fuse-overlayfs on top', async () => {
    await using img = await init(fixture('sif-basic.sif'));
    const dir = registerMountPoint(mountDir('fuse-overlayfs-root'));
    const caps = await capabilities();
    if (!caps.fuse.unprivileged) {
      const err = await errorOf(root(img, dir, { privileged: false }));
      expect(err.code).to.equal('ERR_NO_DRIVER');
      expect(err.message).to.match(/\/dev\/fuse is not open to unprivileged users here/);
    }
    const ov = path.join(testTmp, 'fuse-ovl-upper');
    fs.mkdirSync(ov);
    await using dirImg = await init(ov, true);
    expect(dirImg.writable).to.equal(true);
    const r2 = await root(img, dir, { driver: 'fuse', overlays: [{ path: ov, writable: true }] });
    try {
      expect(r2.mounts.at(-1)!.fstype).to.match(/^fuse\.fuse-overlayfs$/);
      fs.writeFileSync(path.join(dir, 'written.txt'), 'upper');
      expect(fs.readFileSync(path.join(ov, 'upper', 'written.txt'), 'utf8')).to.equal('upper');
    } finally {
      await r2.close();
    }
    expect(await entry(dir)).to.equal(undefined);
  });

  it('a gocryptfs SIF root: the right key mounts it, a wrong one is refused', async () => {
    const g = await gocryptfsImage(path.join(testTmp, 'gocryptfs-root'));
    await using img: Image = await init(g.sif);
    expect(img.encryptedRootFs()).to.equal('gocryptfs');
    const dir = registerMountPoint(mountDir('gocryptfs-root'));
    {
      await using r = await root(img, dir, { key: g.key });
      expect(r.root.readonly).to.equal(true);
      expect(fs.readFileSync(path.join(dir, 'etc/hello.txt'), 'utf8')).to.equal('hello from imgmount\n');
    }
    const wrong = await errorOf(root(img, dir, { key: 'not the key' }));
    expect(wrong.code).to.equal('ERR_KEY_REJECTED');
    expect(await entry(dir)).to.equal(undefined);
  });

  it('releaseMount() of a FUSE-backed root from its target alone stops the helpers and removes every record', async () => {
    await using img = await init(fixture('sif-basic.sif'));
    const dir = registerMountPoint(mountDir('fuse-release'));
    const before = helperProcesses();
    const r = await root(img, dir, { driver: 'fuse', writableTmpfs: true, persist: true });
    const record = await findMountRecord(dir);
    expect(record?.internalMounts.length).to.be.greaterThan(0);
    await releaseMount(dir);
    expect(await entry(dir)).to.equal(undefined);
    for (const inner of record!.internalMounts) expect(await findMountRecord(inner)).to.equal(undefined);
    expect(fs.existsSync(record!.sessionDir!)).to.equal(false);
    expect(helperProcesses().filter((h) => !before.includes(h))).to.deep.equal([]);
    await r.close(); // the handle finds everything gone, and does not fail
  });
});
