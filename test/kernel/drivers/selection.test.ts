// Driver selection and every image format by each driver that supports it, through the
// public entry points (mountImage, root, Image.root) rather than the drivers directly.
import { expect } from 'chai';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ImgmountError, RootFs, init, type Image } from '../../../lib';
import { findMountRecord } from '../../../lib/drivers/mount-record';
import { chooseDriver } from '../../../lib/drivers/select';
import { attachLoop } from '../../../lib/loop';
import { capabilities, findMounts, readMountInfo } from '../../../lib/mount';
import { mountImage, releaseMount, root } from '../../../lib/root';
import { fixture } from '../../support/fixtures';
import { running } from '../../support/forgery';
import { gocryptfsImage } from '../../support/gocryptfs-image';
import { testTmp } from '../../support/hooks';
import { mountDir } from '../../support/images';
import { requireKernel } from '../../support/kernel';
import { helperProcesses, registerMountPoint } from '../../support/leaks';

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

  it('as root the kernel mounts what it can read and may parse (a root-only squashfs file; ext3 the caller trusts)', async () => {
    expect(await choice('sq-zstd.sqfs')).to.deep.include({ driver: 'kernel', filesystem: 'squashfs' });
    expect(await choice('ext3.img', { trusted: true })).to.deep.include({ driver: 'kernel', filesystem: 'ext3' });
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
    expect((await choice('ext3.img', { allowKernelExtfs: false, trusted: true })).driver).to.equal('fuse');
    const forced = await errorOf(choice('sq-gzip.sqfs', { allowKernelSquashfs: false, driver: 'kernel' }));
    expect(forced.code).to.equal('ERR_NO_DRIVER');
    expect(forced.message).to.match(/^no kernel driver can mount squashfs partition .*: policy forbids kernel mounts of squashfs images \(allowKernelSquashfs: false\)$/);
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

describe('kernel: which parser reads an image (CVE-2023-30549)', function () {
  before(function () {
    requireKernel(this);
  });

  /** A copy of a fixture that this test may chown and chmod. */
  function copy(name: string): string {
    const to = path.join(testTmp, `policy-${Math.random().toString(36).slice(2, 8)}-${name}`);
    fs.copyFileSync(fixture(name), to);
    return to;
  }

  it('ext3 goes to fuse2fs by default; allowKernelExtfs, trusted or driver kernel let the kernel', async () => {
    const c = await choice('ext3.img');
    expect(c).to.deep.include({ driver: 'fuse', filesystem: 'ext3' });
    expect(c.reason).to.match(/^the image is not marked trusted, so \S*fuse2fs \(FUSE\) parses it \(CVE-2023-30549\); pass trusted: true or allowKernelExtfs: true to let the kernel$/);
    expect(await choice('ext3.img', { allowKernelExtfs: true })).to.deep.include({ driver: 'kernel', reason: 'the kernel reads ext3 (allowKernelExtfs: true)' });
    expect(await choice('ext3.img', { trusted: true })).to.deep.include({ driver: 'kernel', reason: 'the kernel reads ext3 (the caller trusts the image)' });
    expect((await choice('ext3.img', { driver: 'kernel' })).driver).to.equal('kernel');
    expect((await choice('sif-ext3-root.sif')).driver).to.equal('fuse');
  });

  it('squashfs: the kernel for a root-owned 0644 file; chowned to 65534 or chmod 0666, squashfuse unless trusted (read from the open fd)', async () => {
    const file = copy('sq-gzip.sqfs');
    fs.chownSync(file, 0, 0);
    fs.chmodSync(file, 0o644);
    await using img = await init(file);
    const part = img.getRootFsPartition();
    const pick = (policy: Parameters<typeof chooseDriver>[2] = {}) => chooseDriver(img, part, policy);
    expect(await pick()).to.deep.include({ driver: 'kernel', reason: 'the kernel reads gzip squashfs (the image file is owned by root and writable by no one else)' });

    fs.chownSync(file, 65534, 65534); // the fd's inode: what was opened is what is judged
    const nobody = await pick();
    expect(nobody.driver).to.equal('fuse');
    expect(nobody.reason).to.match(/^the image file is writable by uid 65534 \(owner 65534, mode 0644\), so \S*squashfuse\S* \(FUSE\) parses it \(CVE-2023-30549\); pass trusted: true to let the kernel$/);
    expect((await pick({ trusted: true })).driver).to.equal('kernel');
    expect((await pick({ allowKernelSquashfs: true })).driver).to.equal('kernel');

    fs.chownSync(file, 0, 0);
    fs.chmodSync(file, 0o666);
    const open = await pick();
    expect(open.driver).to.equal('fuse');
    expect(open.reason).to.match(/^the image file is writable by group 0 and everyone \(owner 0, mode 0666\)/);
    expect((await pick({ trusted: true })).driver).to.equal('kernel');
    fs.chmodSync(file, 0o644);
    expect((await pick()).driver).to.equal('kernel');
  });

  it('a block device writable by group disk (root:disk 0660, as udev makes them) is not trusted', async () => {
    const dev = await attachLoop(copy('sq-gzip.sqfs'), { readOnly: true });
    try {
      // Our own node for the device (this machine's /dev may have no udev rules): root:disk 0660.
      const rdev = fs.statSync(dev.path).rdev;
      const node = path.join(testTmp, `policy-blk-${path.basename(dev.path)}`);
      execFileSync('mknod', ['-m', '0660', node, 'b', String(Math.floor(rdev / 256) & 0xfff), String((rdev & 0xff) | ((rdev >> 12) & ~0xff))]);
      fs.chownSync(node, 0, 6);
      try {
        await using img = await init(node);
        const c = await chooseDriver(img, img.getRootFsPartition());
        expect(c.driver).to.equal('fuse');
        expect(c.reason).to.match(/^the image file is writable by group 6 \(owner 0, mode 0660\), so \S*squashfuse/);
        expect((await chooseDriver(img, img.getRootFsPartition(), { trusted: true })).driver).to.equal('kernel');
        fs.chmodSync(node, 0o640);
        expect((await chooseDriver(img, img.getRootFsPartition())).driver).to.equal('kernel');
      } finally {
        fs.rmSync(node);
      }
    } finally {
      await dev.close();
    }
  });

  it('mounting for real: an untrusted squashfs by squashfuse, with driver kernel by the kernel; allowKernelSquashfs: false + driver kernel is ERR_NO_DRIVER', async () => {
    const file = copy('sq-gzip.sqfs');
    fs.chownSync(file, 65534, 65534);
    await using img = await init(file);
    const dir = registerMountPoint(mountDir('policy-squashfs'));
    {
      await using m = await mountImage(img, dir);
      expect(m.driver).to.equal('fuse');
      expect((await entry(dir))!.fstype).to.equal('fuse.squashfuse_ll');
      expect(fs.existsSync(path.join(dir, 'etc/hello.txt'))).to.equal(true);
    }
    for (const policy of [{ driver: 'kernel' as const }, { trusted: true }]) {
      await using m = await mountImage(img, dir, policy);
      expect(m.driver).to.equal('kernel');
      expect((await entry(dir))!.fstype).to.equal('squashfs');
    }
    const refused = await errorOf(mountImage(img, dir, { driver: 'kernel', allowKernelSquashfs: false }));
    expect(refused.code).to.equal('ERR_NO_DRIVER');
    expect(refused.message).to.match(/policy forbids kernel mounts of squashfs images \(allowKernelSquashfs: false\)/);
    expect(await entry(dir)).to.equal(undefined);
  });

  it('mounting for real: an ext3 partition by fuse2fs by default, by the kernel with allowKernelExtfs or trusted', async () => {
    await using img = await init(fixture('sif-data.sif'));
    const part = img.getDataPartitions().find((p) => p.name === 'scratch')!;
    const dir = registerMountPoint(mountDir('policy-ext3'));
    {
      await using m = await mountImage(img, dir, { partition: part });
      expect(m.driver).to.equal('fuse');
      expect(m.helpers.map((h) => h.program)).to.deep.equal(['fuse2fs']);
      expect((await entry(dir))!.fstype).to.equal('fuse.ext4'); // fuse2fs's subtype
    }
    for (const policy of [{ allowKernelExtfs: true }, { trusted: true }]) {
      await using m = await mountImage(img, dir, { partition: part, ...policy });
      expect(m.driver).to.equal('kernel');
      expect((await entry(dir))!.fstype).to.equal('ext3');
    }
    expect(await entry(dir)).to.equal(undefined);
  });
});

describe('kernel: every format by each driver that supports it', function () {
  before(function () {
    requireKernel(this);
  });

  // fixture, partition, drivers, filesystem (as made by scripts/make-fixtures.ts)
  const cases: Array<[string, string, Array<'kernel' | 'fuse'>, 'squashfs' | 'ext3']> = [
    ['sq-gzip.sqfs', RootFs, ['kernel', 'fuse'], 'squashfs'],
    ['sq-lzo.sqfs', RootFs, ['kernel', 'fuse'], 'squashfs'],
    ['sq-lz4.sqfs', RootFs, ['kernel', 'fuse'], 'squashfs'],
    ['sq-xz.sqfs', RootFs, ['kernel', 'fuse'], 'squashfs'],
    ['sq-zstd.sqfs', RootFs, ['kernel', 'fuse'], 'squashfs'],
    ['hdr-lf.sqfs', RootFs, ['kernel', 'fuse'], 'squashfs'],
    ['hdr-crlf.sqfs', RootFs, ['kernel', 'fuse'], 'squashfs'],
    ['sq-tiny-nopad.sqfs', RootFs, ['fuse'], 'squashfs'], // 156 bytes: a loop device shows whole 512-byte sectors only
    ['ext3.img', RootFs, ['kernel', 'fuse'], 'ext3'],
    ['hdr-lf.ext3', RootFs, ['kernel', 'fuse'], 'ext3'],
    ['sif-basic.sif', RootFs, ['kernel', 'fuse'], 'squashfs'],
    ['sif-ext3-root.sif', RootFs, ['kernel', 'fuse'], 'ext3'],
    ['sif-data.sif', 'data', ['kernel', 'fuse'], 'squashfs'],
    ['sif-data.sif', 'scratch', ['kernel', 'fuse'], 'ext3'],
  ];
  // What mountinfo shows: the kernel's type, or fuse.<subtype> (fuse2fs calls itself ext4).
  const fstypeOf = { kernel: { squashfs: 'squashfs', ext3: 'ext3' }, fuse: { squashfs: 'fuse.squashfuse_ll', ext3: 'fuse.ext4' } } as const;
  const emptyFs: Record<string, string[]> = { 'sq-tiny-nopad.sqfs': [], 'sif-data.sif:scratch': ['lost+found'] };
  for (const [file, partName, drivers, filesystem] of cases) {
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
          expect(e.fstype).to.equal(fstypeOf[driver][filesystem]);
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
    // Whether others may open /dev/fuse is the device node's mode (0600 on this machine kind),
    // read here, not taken from capabilities(), which must agree.
    const openToUsers = (fs.statSync('/dev/fuse').mode & 0o006) === 0o006;
    expect((await capabilities()).fuse.unprivileged).to.equal(openToUsers);
    if (!openToUsers) {
      const err = await errorOf(root(img, dir, { privileged: false }));
      expect(err.code).to.equal('ERR_NO_DRIVER');
      expect(err.message).to.match(/\/dev\/fuse is not open to unprivileged users here/);
    } else {
      console.log('      (/dev/fuse is open to users here: the refusal without it is not checked)');
    }
    const ov = path.join(testTmp, 'fuse-ovl-upper');
    fs.mkdirSync(ov);
    await using dirImg = await init(ov, true);
    expect(dirImg.writable).to.equal(true);
    const r2 = await root(img, dir, { driver: 'fuse', overlays: [{ path: ov, writable: true }] });
    try {
      expect(r2.mounts.at(-1)!.fstype).to.equal('fuse.fuse-overlayfs');
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
    // The squashfuse lower and the tmpfs upper in the session directory; fuse-overlayfs on the target.
    expect(record!.internalMounts.map((p) => path.relative(record!.sessionDir!, p))).to.deep.equal(['lower', 'tmpfs']);
    // The helpers this root runs, by the records (whatever else runs on the machine).
    const inner = await Promise.all(record!.internalMounts.map((p) => findMountRecord(p)));
    const helpers = [record!, ...inner].flatMap((rec) => rec?.helpers ?? []);
    expect(helpers.map((h) => `${h.program}:${running(h.pid)}`)).to.deep.equal(['fuse-overlayfs:true', 'squashfuse_ll:true']);
    await releaseMount(dir);
    expect(await entry(dir)).to.equal(undefined);
    for (const inner of record!.internalMounts) expect(await findMountRecord(inner)).to.equal(undefined);
    expect(fs.existsSync(record!.sessionDir!)).to.equal(false);
    expect(helpers.filter((h) => running(h.pid))).to.deep.equal([]);
    expect(helperProcesses().filter((h) => !before.includes(h))).to.deep.equal([]);
    await r.close(); // the handle finds everything gone, and does not fail
  });
});
