// Container roots with the kernel driver: root() with and without overlays, the SIF's own
// overlay partition, external overlays, data partitions, sandboxes, locks, the OCI Root
// shape, ID-mapped roots and roots in another mount namespace. Every mount is checked in
// mountinfo and released by the handle (the suite's leak check catches the rest).
import { expect } from 'chai';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ImgmountError, init, type Image } from '../../../lib';
import { findMountRecord } from '../../../lib/drivers/mount-record';
import { capabilities, findMounts, readMountInfo, type MountInfoEntry } from '../../../lib/mount';
import { createUserNamespace } from '../../../lib/ns';
import { root, mountImage, releaseMount, type RootOptions } from '../../../lib/root';
import { fixture } from '../../support/fixtures';
import { createSif } from '../../../lib/sif';
import { DataPartition, FsExt3, FsSquash, PartOverlay, PartPrimSys } from '../../../lib/sif/constants';
import { hostArch } from '../../../lib/image/arch';
import { testTmp } from '../../support/hooks';
import { mountDir } from '../../support/images';
import { eventually, requireKernel, requireUserNamespaces, startNamespaceHolder, stopHolder } from '../../support/kernel';
import { boundLoops, registerMountPoint } from '../../support/leaks';
import { skip } from '../../support/skip';

async function mountAt(p: string): Promise<MountInfoEntry | undefined> {
  return findMounts(await readMountInfo(), { mountPoint: p })[0];
}

function copyFixture(name: string): string {
  const to = path.join(testTmp, `${path.basename(name, path.extname(name))}-${Math.random().toString(36).slice(2, 8)}${path.extname(name)}`);
  fs.copyFileSync(fixture(name), to);
  return to;
}

function loopsFor(file: string): string[] {
  return boundLoops().filter((l) => l.backingFile === file).map((l) => l.name);
}

const kernelOnly = { driver: 'kernel' as const };

describe('kernel: mountImage and root() with the kernel driver', function () {
  before(function () {
    requireKernel(this);
  });

  it('mounts the root partition of a SIF read-only, nosuid, nodev, and releases it with the loop device', async () => {
    const sif = copyFixture('sif-basic.sif');
    await using img = await init(sif);
    const dir = registerMountPoint(mountDir('root-sif'));
    const r = await root(img, dir, kernelOnly);
    expect(r.root).to.deep.equal({ path: dir, readonly: true });
    expect(Object.keys(r.root).sort()).to.deep.equal(['path', 'readonly']); // OCI runtime-spec Root
    expect(fs.readFileSync(path.join(dir, 'etc/hello.txt'), 'utf8')).to.equal('hello from imgmount\n');
    const m = (await mountAt(dir))!;
    expect(m.fstype).to.equal('squashfs');
    expect(m.mountOptions).to.include.members(['ro', 'nosuid', 'nodev']);
    expect(r.mounts[0]!.loopDevice).to.match(/^\/dev\/loop\d+$/);
    expect(loopsFor(sif)).to.deep.equal([path.basename(r.mounts[0]!.loopDevice!)]); // bound to this copy
    expect(() => fs.writeFileSync(path.join(dir, 'x'), 'x')).to.throw(/EROFS/);
    // The setuid bit is in the image but not honoured (nosuid), and the handle releases it all.
    expect(fs.statSync(path.join(dir, 'bin/setuid-marker')).mode & 0o4000).to.equal(0o4000);
    await r.close();
    await r.close();
    expect(await mountAt(dir)).to.equal(undefined);
    await eventually(() => loopsFor(sif).length === 0, 3000, 'the loop device to autoclear');
  });

  it('Image.root() is the same operation', async () => {
    await using img = await init(fixture('hdr-lf.sqfs'));
    const dir = registerMountPoint(mountDir('image-root'));
    await using r = await img.root(dir, kernelOnly);
    expect(r.root.readonly).to.equal(true);
    expect(fs.existsSync(path.join(dir, 'bin/true.sh'))).to.equal(true);
  });

  it('an ext3 root opened writable is mounted read-write with errors=remount-ro; a second writer is refused', async () => {
    const file = copyFixture('ext3.img');
    const dir = registerMountPoint(mountDir('root-ext3'));
    {
      await using img = await init(file, true);
      await using r = await root(img, dir, { ...kernelOnly, writable: true });
      expect(r.root.readonly).to.equal(false);
      const m = (await mountAt(dir))!;
      expect(m.fstype).to.equal('ext3');
      expect(m.mountOptions).to.include.members(['rw', 'nosuid', 'nodev']);
      expect(m.superOptions).to.include('errors=remount-ro');
      fs.writeFileSync(path.join(dir, 'written.txt'), 'persisted\n');
      const second = await init(file, true).catch((e: unknown) => e);
      expect((second as ImgmountError).code).to.equal('ERR_IMAGE_LOCKED');
    }
    await using again = await init(file);
    const dir2 = registerMountPoint(mountDir('root-ext3-again'));
    await using r2 = await root(again, dir2, kernelOnly);
    expect(r2.root.readonly).to.equal(true);
    expect(fs.readFileSync(path.join(dir2, 'written.txt'), 'utf8')).to.equal('persisted\n');
  });

  it('writable is refused for a squashfs-only image, with what to do instead', async () => {
    await using img = await init(copyFixture('sif-basic.sif'), true);
    const err = await root(img, registerMountPoint(mountDir('nope')), { ...kernelOnly, writable: true }).catch((e: unknown) => e);
    expect((err as ImgmountError).code).to.equal('ERR_READ_ONLY_FS');
    expect((err as Error).message).to.match(/no SIF writable overlay partition found in .*writableTmpfs/);
  });

  it('writableTmpfs: an overlay whose writes vanish with it, its layers never in the mount tree (one native call)', async function () {
    if (!(await capabilities()).overlayLayersByFd) return skip(this, 'this kernel does not take detached mounts as overlay layers (the next test covers the session directory)');
    const sif = copyFixture('sif-basic.sif');
    await using img = await init(sif);
    const dir = registerMountPoint(mountDir('root-tmpfs'));
    const before = (await readMountInfo()).length;
    const r = await root(img, dir, { ...kernelOnly, writableTmpfs: true, tmpfsSize: '8m' });
    expect(r.root.readonly).to.equal(false);
    const m = (await mountAt(dir))!;
    expect(m.fstype).to.equal('overlay');
    expect(m.mountOptions).to.include.members(['nosuid', 'nodev']);
    expect((await readMountInfo()).length, 'one mount: the overlay, its layers detached').to.equal(before + 1);
    fs.writeFileSync(path.join(dir, 'etc/new.txt'), 'new\n');
    expect(fs.readFileSync(path.join(dir, 'etc/hello.txt'), 'utf8')).to.equal('hello from imgmount\n');
    expect(fs.statfsSync(dir).blocks * fs.statfsSync(dir).bsize, 'the tmpfs size asked').to.equal(8 * 1024 * 1024);
    const record = (await findMountRecord(dir))!;
    expect(record.fstype).to.equal('overlay');
    expect(record.internalMounts).to.deep.equal([]);
    expect(record.sessionDir).to.equal(undefined);
    expect(loopsFor(sif)).to.have.length(1);
    await r.close();
    expect(await mountAt(dir)).to.equal(undefined);
    expect(await findMountRecord(dir)).to.equal(undefined);
    await eventually(() => loopsFor(sif).length === 0, 3000, 'the lower layer to be released with the overlay');
  });

  it('writableTmpfs on the general path (mount(2)): layers on a session directory, all released with the root', async () => {
    process.env.IMGMOUNT_MOUNT_API = 'legacy';
    try {
      await using img = await init(fixture('sif-basic.sif'));
      const dir = registerMountPoint(mountDir('root-tmpfs-legacy'));
      const r = await root(img, dir, { ...kernelOnly, writableTmpfs: true });
      expect(r.root.readonly).to.equal(false);
      const m = (await mountAt(dir))!;
      expect(m.fstype).to.equal('overlay');
      expect(m.mountOptions).to.include.members(['nosuid', 'nodev']);
      fs.writeFileSync(path.join(dir, 'etc/new.txt'), 'new\n');
      expect(fs.readFileSync(path.join(dir, 'etc/hello.txt'), 'utf8')).to.equal('hello from imgmount\n');
      const record = await findMountRecord(dir);
      expect(record?.internalMounts.length).to.equal(2); // tmpfs + lower
      await r.close();
      expect(await mountAt(dir)).to.equal(undefined);
      for (const inner of record!.internalMounts) expect(await mountAt(inner)).to.equal(undefined);
      expect(fs.existsSync(record!.sessionDir!)).to.equal(false);
      expect(await findMountRecord(dir)).to.equal(undefined);
    } finally {
      delete process.env.IMGMOUNT_MOUNT_API;
    }
  });

  it("the SIF's own ext3 overlay partition is the upper layer: a file written persists across a remount", async () => {
    const sif = copyFixture('sif-overlay.sif');
    const dir = registerMountPoint(mountDir('root-sif-overlay'));
    {
      await using img = await init(sif, true);
      await using r = await root(img, dir, { ...kernelOnly, writable: true });
      expect(r.root.readonly).to.equal(false);
      fs.writeFileSync(path.join(dir, 'etc/persist.txt'), 'kept in the SIF\n');
    }
    expect(loopsFor(sif)).to.deep.equal([]);
    {
      await using img = await init(sif);
      await using r = await root(img, dir, kernelOnly);
      // Opened read-only, the overlay partition is still applied, read-only (Apptainer's engine
      // does this on every run): what was installed with --writable is there, and stays as it is.
      expect(fs.readFileSync(path.join(dir, 'etc/persist.txt'), 'utf8')).to.equal('kept in the SIF\n');
      expect(r.root.readonly).to.equal(true);
      expect((await mountAt(dir))!.fstype).to.equal('overlay');
      expect((await mountAt(dir))!.mountOptions).to.include('ro');
      expect(() => fs.writeFileSync(path.join(dir, 'etc/persist.txt'), 'changed\n')).to.throw(/EROFS/);
    }
    await using rw = await init(sif, true);
    await using r2 = await root(rw, dir, { ...kernelOnly, writable: true });
    expect(r2.root.readonly).to.equal(false);
    expect(fs.readFileSync(path.join(dir, 'etc/persist.txt'), 'utf8')).to.equal('kept in the SIF\n');
  });

  it('every overlay partition is applied, in order: the SIF\'s own (two) and an overlay SIF\'s (two), the first on top', async () => {
    // ext3 overlay partitions holding upper/ with a file each, and one file all of them shadow.
    const layer = (name: string): Buffer => {
      const tree = path.join(testTmp, `ovl-tree-${name}`);
      fs.mkdirSync(path.join(tree, 'upper', 'etc'), { recursive: true });
      fs.writeFileSync(path.join(tree, 'upper', 'etc', `${name}.txt`), `${name}\n`);
      fs.writeFileSync(path.join(tree, 'upper', 'etc', 'who.txt'), `${name}\n`);
      const img = path.join(testTmp, `ovl-${name}.ext3`);
      execFileSync('mke2fs', ['-q', '-F', '-t', 'ext3', '-d', tree, img, '2048k']);
      return fs.readFileSync(img);
    };
    const part = (data: Buffer, partType: number, name: string) => ({ dataType: DataPartition, name, data, partition: { fsType: partType === PartPrimSys ? FsSquash : FsExt3, partType, arch: hostArch() } });
    const sifWith = async (file: string, objects: ReturnType<typeof part>[]) => (await (await createSif(file, { objects })).close(), file);
    const base = await sifWith(path.join(testTmp, 'two-overlays.sif'), [
      part(fs.readFileSync(fixture('sq-gzip.sqfs')), PartPrimSys, 'rootfs'),
      part(layer('own-a'), PartOverlay, 'a'),
      part(layer('own-b'), PartOverlay, 'b'),
    ]);
    const extra = await sifWith(path.join(testTmp, 'overlay-sif.sif'), [part(layer('ext-a'), PartOverlay, 'a'), part(layer('ext-b'), PartOverlay, 'b')]);
    await using img = await init(base);
    const dir = registerMountPoint(mountDir('root-all-overlays'));
    await using r = await root(img, dir, { ...kernelOnly, overlays: [extra] });
    for (const name of ['own-a', 'own-b', 'ext-a', 'ext-b']) expect(fs.readFileSync(path.join(dir, 'etc', `${name}.txt`), 'utf8')).to.equal(`${name}\n`);
    expect(fs.readFileSync(path.join(dir, 'etc/hello.txt'), 'utf8')).to.equal('hello from imgmount\n');
    // External overlays over the image's own, each image's first partition over its next.
    expect(fs.readFileSync(path.join(dir, 'etc/who.txt'), 'utf8')).to.equal('ext-a\n');
    expect(r.root.readonly).to.equal(true);
    const lowerdir = (await mountAt(dir))!.superOptions.find((o) => o.startsWith('lowerdir='))!.split('=')[1]!.split(':');
    expect(lowerdir).to.have.length(5);
  });

  it('an external ext3 overlay image as upper layer, and a squashfs one as an extra lower layer', async () => {
    const ov = copyFixture('ext3-empty.img');
    await using img = await init(fixture('sif-basic.sif'));
    const dir = registerMountPoint(mountDir('root-ext-overlay'));
    {
      await using r = await root(img, dir, { ...kernelOnly, overlays: [{ path: ov, writable: true }] });
      expect(r.root.readonly).to.equal(false);
      fs.writeFileSync(path.join(dir, 'upper.txt'), 'in the overlay image\n');
    }
    {
      await using r = await root(img, dir, { ...kernelOnly, overlays: [ov] });
      expect(r.root.readonly).to.equal(true);
      expect(fs.readFileSync(path.join(dir, 'upper.txt'), 'utf8')).to.equal('in the overlay image\n');
    }
    await using r = await root(img, dir, { ...kernelOnly, overlays: [fixture('sq-xz.sqfs')], writableTmpfs: true });
    expect(r.root.readonly).to.equal(false);
    expect(fs.existsSync(path.join(dir, 'etc/hello.txt'))).to.equal(true);
  });

  it('data partitions are mounted inside the root, and released before it', async () => {
    await using img = await init(fixture('sif-data.sif'));
    const dir = registerMountPoint(mountDir('root-data'));
    const r = await root(img, dir, { ...kernelOnly, data: [{ partition: 'data', path: '/data' }] });
    expect(fs.readFileSync(path.join(dir, 'data/etc/hello.txt'), 'utf8')).to.equal('hello from imgmount\n');
    expect((await mountAt(path.join(dir, 'data')))?.fstype).to.equal('squashfs');
    await r.close();
    expect(await mountAt(path.join(dir, 'data'))).to.equal(undefined);
    expect(await mountAt(dir)).to.equal(undefined);
    const err = await root(img, dir, { ...kernelOnly, data: [{ partition: 'data', path: '/no/such/dir' }] }).catch((e: unknown) => e);
    expect((err as NodeJS.ErrnoException).code).to.equal('ERR_INVALID_ARG_VALUE');
    expect(await mountAt(dir)).to.equal(undefined); // a failed root() leaves nothing
  });

  it('close() waits out a mount that is busy for a moment (found by npm run soak), and can be retried after one that stays busy', async () => {
    const sif = copyFixture('sif-kernel.sif');
    await using img = await init(sif);
    const kinds: RootOptions[] = [kernelOnly, { ...kernelOnly, writableTmpfs: true }, { ...kernelOnly, data: [{ partition: 'data', path: '/data' }] }];
    for (const options of kinds) {
      const dir = registerMountPoint(mountDir('root-busy'));
      // Busy for a moment, as a forked child holding a copy of an fd until it execs makes it.
      let r = await root(img, dir, options);
      let fd = fs.openSync(path.join(dir, options.data ? 'data/etc/hello.txt' : 'etc/hello.txt'), 'r');
      const released = new Promise<void>((resolve) => setTimeout(() => resolve(fs.closeSync(fd)), 50));
      await r.close();
      await released;
      expect(await mountAt(dir), JSON.stringify(options)).to.equal(undefined);
      expect(await findMountRecord(dir)).to.equal(undefined);
      // Busy until released: close() fails with EBUSY, keeps the record, and a later close() finishes the job.
      r = await root(img, dir, options);
      fd = fs.openSync(path.join(dir, 'etc/hello.txt'), 'r');
      const err = await r.close().catch((e: unknown) => e);
      expect((err as NodeJS.ErrnoException).code, JSON.stringify(options)).to.equal('EBUSY');
      expect(r.closed).to.equal(false);
      expect(await mountAt(dir)).to.not.equal(undefined);
      expect((await findMountRecord(dir))?.target).to.equal(dir);
      fs.closeSync(fd);
      await r.close();
      expect(r.closed).to.equal(true);
      expect(await mountAt(dir)).to.equal(undefined);
      expect(await findMountRecord(dir)).to.equal(undefined);
    }
    await eventually(() => loopsFor(sif).length === 0, 3000, 'the loop devices to autoclear');
  });

  it('a sandbox directory is bind-mounted read-only, nosuid, nodev (read-write when opened writable)', async () => {
    const tree = path.join(testTmp, 'sandbox-tree');
    fs.cpSync(fixture('rootfs'), tree, { recursive: true });
    const dir = registerMountPoint(mountDir('root-sandbox'));
    {
      await using img = await init(tree);
      await using r = await root(img, dir);
      expect(r.root.readonly).to.equal(true);
      const m = (await mountAt(dir))!;
      expect(m.mountOptions).to.include.members(['ro', 'nosuid', 'nodev']);
      expect(fs.readFileSync(path.join(dir, 'etc/hello.txt'), 'utf8')).to.equal('hello from imgmount\n');
    }
    await using img = await init(tree, true);
    await using r = await root(img, dir, { writable: true });
    expect(r.root.readonly).to.equal(false);
    fs.writeFileSync(path.join(dir, 'sandbox-write.txt'), 'ok');
    expect(fs.readFileSync(path.join(tree, 'sandbox-write.txt'), 'utf8')).to.equal('ok');
  });

  it('mountImage of one partition by the kernel driver, and releaseMount() from the target alone', async () => {
    await using img = await init(fixture('sif-data.sif'));
    const dir = registerMountPoint(mountDir('one-partition'));
    const part = img.getDataPartitions().find((p) => p.name === 'scratch')!;
    const m = await mountImage(img, dir, { ...kernelOnly, partition: part });
    expect(m.fstype).to.equal('ext3');
    expect(m.readOnly).to.equal(true);
    await releaseMount(dir);
    expect(await mountAt(dir)).to.equal(undefined);
    await m.close(); // already gone: closing the handle must not throw... or leak
  });
});

describe('kernel: writable ext3 overlays under the default policy (fuse2fs upper layer, fuse-overlayfs top)', function () {
  before(function () {
    requireKernel(this);
  });

  it("the SIF's own ext3 overlay partition: writable root, the write lands in the partition, a remount shows it", async () => {
    const sif = copyFixture('sif-overlay.sif');
    const dir = registerMountPoint(mountDir('policy-sif-overlay'));
    {
      await using img = await init(sif, true);
      await using r = await root(img, dir, { writable: true });
      expect(r.root.readonly).to.equal(false);
      expect(r.mounts.map((m) => `${m.driver}:${m.helpers.map((h) => h.program).join(',') || m.fstype}`)).to.deep.equal(['fuse:fuse2fs', 'kernel:squashfs', 'fuse:fuse-overlayfs']);
      expect((await mountAt(dir))!.fstype).to.equal('fuse.fuse-overlayfs');
      fs.writeFileSync(path.join(dir, 'etc/policy.txt'), 'through fuse2fs\n');
      expect(fs.readFileSync(path.join(dir, 'etc/hello.txt'), 'utf8')).to.equal('hello from imgmount\n');
    }
    expect(await mountAt(dir)).to.equal(undefined);
    {
      // In the overlay partition itself (read here by fuse2fs, read-only):
      await using img = await init(sif);
      const part = img.getOverlayPartitions()[0]!;
      await using m = await mountImage(img, dir, { partition: part });
      expect(m.driver).to.equal('fuse');
      expect(fs.readFileSync(path.join(dir, 'upper/etc/policy.txt'), 'utf8')).to.equal('through fuse2fs\n');
    }
    await using rw = await init(sif, true);
    await using r2 = await root(rw, dir, { writable: true });
    expect(r2.root.readonly).to.equal(false);
    expect(fs.readFileSync(path.join(dir, 'etc/policy.txt'), 'utf8')).to.equal('through fuse2fs\n');
  });

  it('an external ext3 overlay image as upper layer: writable root, the write lands in the image, a remount shows it', async () => {
    const ov = copyFixture('ext3-empty.img');
    await using img = await init(fixture('sif-basic.sif'));
    const dir = registerMountPoint(mountDir('policy-ext-overlay'));
    {
      await using r = await root(img, dir, { overlays: [{ path: ov, writable: true }] });
      expect(r.root.readonly).to.equal(false);
      expect(r.mounts.map((m) => m.driver)).to.deep.equal(['fuse', 'kernel', 'fuse']);
      expect((await mountAt(dir))!.fstype).to.equal('fuse.fuse-overlayfs');
      fs.writeFileSync(path.join(dir, 'upper.txt'), 'in the overlay image\n');
    }
    {
      await using ovImg = await init(ov);
      await using m = await mountImage(ovImg, dir, { allowKernelExtfs: true });
      expect(m.driver).to.equal('kernel');
      expect(fs.readFileSync(path.join(dir, 'upper/upper.txt'), 'utf8')).to.equal('in the overlay image\n');
    }
    await using r = await root(img, dir, { overlays: [ov] });
    expect(r.root.readonly).to.equal(true);
    expect(fs.readFileSync(path.join(dir, 'upper.txt'), 'utf8')).to.equal('in the overlay image\n');
  });

  it('trusted does not carry over to overlay images; allowKernelExtfs gives a kernel overlayfs over a kernel ext3 upper', async () => {
    const ov = copyFixture('ext3-empty.img');
    await using img = await init(fixture('sif-basic.sif'));
    const dir = registerMountPoint(mountDir('policy-ovl-trust'));
    {
      await using r = await root(img, dir, { trusted: true, overlays: [{ path: ov, writable: true }] });
      expect(r.mounts.map((m) => m.driver)).to.deep.equal(['fuse', 'kernel', 'fuse']);
    }
    await using r = await root(img, dir, { allowKernelExtfs: true, overlays: [{ path: ov, writable: true }] });
    expect(r.mounts.map((m) => `${m.driver}:${m.fstype}`)).to.deep.equal(['kernel:ext3', 'kernel:squashfs', 'kernel:overlay']);
    fs.writeFileSync(path.join(dir, 'kernel.txt'), 'x');
  });
});

describe('kernel: roots in other namespaces', function () {
  before(function () {
    requireKernel(this);
    requireUserNamespaces(this);
  });

  it('an ID-mapped root shows mapped owners', async () => {
    await using userns = await createUserNamespace({ uidMap: [{ inside: 0, outside: 100000, count: 65536 }], gidMap: [{ inside: 0, outside: 200000, count: 65536 }] });
    await using img = await init(fixture('sif-basic.sif'));
    const dir = registerMountPoint(mountDir('idmapped-root'));
    await using r = await root(img, dir, { ...kernelOnly, idmap: userns });
    const st = fs.statSync(path.join(dir, 'etc/hello.txt'));
    expect([st.uid, st.gid]).to.deep.equal([100000, 200000]);
    const err = await root(img, registerMountPoint(mountDir('idmap-overlay')), { ...kernelOnly, idmap: userns, writableTmpfs: true }).catch((e: unknown) => e);
    expect((err as ImgmountError).code).to.equal('ERR_IDMAP_UNSUPPORTED');
    expect(r.root.readonly).to.equal(true);
  });

  it("a root mounted into another process's mount namespace is visible there, not here", async () => {
    const holder = await startNamespaceHolder(['-m', '--propagation', 'private']);
    try {
      await using img: Image = await init(fixture('sif-basic.sif'));
      const dir = mountDir('ns-root');
      await using r = await root(img, dir, { ...kernelOnly, namespace: { pid: holder.pid! } });
      expect(fs.readFileSync(`/proc/${holder.pid}/root${dir}/etc/hello.txt`, 'utf8')).to.equal('hello from imgmount\n');
      expect(fs.existsSync(path.join(dir, 'etc/hello.txt'))).to.equal(false);
      expect(r.root.path).to.equal(dir);
    } finally {
      await stopHolder(holder);
    }
  });

  it('an overlay root (tmpfs upper) into another mount namespace: built here, moved there, nothing of it left here', async () => {
    const holder = await startNamespaceHolder(['-m', '--propagation', 'private']);
    try {
      await using img = await init(fixture('sif-basic.sif'));
      const dir = mountDir('ns-overlay-root');
      const r = await root(img, dir, { ...kernelOnly, writableTmpfs: true, namespace: { pid: holder.pid! } });
      expect(r.root).to.deep.equal({ path: dir, readonly: false });
      const there = `/proc/${holder.pid}/root${dir}`;
      expect(fs.readFileSync(path.join(there, 'etc/hello.txt'), 'utf8')).to.equal('hello from imgmount\n');
      fs.writeFileSync(path.join(there, 'etc/written-there.txt'), 'x');
      expect(fs.existsSync(path.join(dir, 'etc/hello.txt'))).to.equal(false);
      // Here: no overlay, no layers, no session directory (the layers live on in the overlay there).
      const here = (await readMountInfo()).filter((m) => m.fstype === 'overlay' || m.mountPoint.includes('/sessions/root-'));
      expect(here).to.deep.equal([]);
      await r.close();
      expect(fs.existsSync(path.join(there, 'etc/hello.txt'))).to.equal(false);
      await eventually(() => !boundLoops().some((l) => l.backingFile === fixture('sif-basic.sif')), 3000, 'the layers to be released');
    } finally {
      await stopHolder(holder);
    }
  });
});
