// Mounting on the real kernel: partitions of a SIF, safe defaults in mountinfo, both mount
// APIs, error mapping, release of the loop device on failure, abort, kill -9, MountFunc.
import { expect } from 'chai';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { AbortError, ImgmountError, SystemError } from '../../../lib/errors';
import { attachLoop, loopCounters } from '../../../lib/loop';
import { testHooks } from '../../../lib/loop/internal';
import {
  MS_BIND,
  MS_RDONLY,
  findMounts,
  mount,
  mountPartition,
  readMountInfo,
  umount,
  type MountInfoEntry,
} from '../../../lib/mount';
import { unsquashfsEntry } from '../../support/fs-tools';
import { busyboxSif, mountDir, testImages } from '../../support/images';
import { eventually, requireKernel, startChild } from '../../support/kernel';
import { boundLoops, mountPoints, registerMountPoint } from '../../support/leaks';
import { repoRoot } from '../../support/paths';
import { skip } from '../../support/skip';

function boundTo(file: string): string[] {
  return boundLoops().filter((l) => l.backingFile === file).map((l) => l.name);
}

async function entryAt(target: string): Promise<MountInfoEntry | undefined> {
  const found = findMounts(await readMountInfo(), { mountPoint: target });
  return found[found.length - 1];
}

function target(name: string): string {
  return registerMountPoint(mountDir(name));
}

describe('kernel: mounting partitions', function () {
  before(function () {
    requireKernel(this);
  });
  afterEach(() => {
    delete process.env.IMGMOUNT_MOUNT_API;
    delete process.env.IMGMOUNT_LOOP_API;
    delete testHooks.pickDevice;
  });

  for (const fstype of ['squashfs', 'ext3'] as const) {
    it(`mounts the ${fstype} partition of a SIF (offset + size limit) and reads a file`, async () => {
      const img = testImages();
      const part = img.sifParts[fstype];
      const dir = target(fstype);
      await using m = await mountPartition(img.sif, dir, { fstype, offset: part.offset, sizeLimit: part.size });
      for (const [rel, content] of Object.entries(img.files)) expect(fs.readFileSync(path.join(dir, rel), 'utf8')).to.equal(content);
      expect(m.fstype).to.equal(fstype);
      expect(m.method).to.equal('new');
      const e = await entryAt(dir);
      expect(e?.fstype).to.equal(fstype);
      expect(e?.source).to.equal(m.loopDevice);
      expect(boundTo(img.sif)).to.deep.equal([`loop${m.loopNumber}`]);
    });
  }

  it('mounts the real busybox SIF (Apptainer-built) and finds /bin/busybox', async function () {
    if (!fs.existsSync(busyboxSif.path)) {
      skip(this, `fixture ${busyboxSif.path} missing`);
    }
    const dir = target('busybox');
    await using m = await mountPartition(busyboxSif.path, dir, { fstype: 'squashfs', offset: busyboxSif.offset, sizeLimit: busyboxSif.size });
    const st = fs.statSync(path.join(dir, 'bin', 'busybox'));
    const listed = unsquashfsEntry(busyboxSif.path, 'bin/busybox', busyboxSif.offset); // -rwxr-xr-x 0/0 1149184
    expect(st.isFile()).to.equal(true);
    expect([st.size, st.uid, st.gid, st.mode & 0o7777]).to.deep.equal([listed.size, listed.uid, listed.gid, 0o755]);
    expect(listed.mode).to.equal('-rwxr-xr-x');
    expect(m.readOnly).to.equal(true);
  });

  it('mounts a squashfs behind a 31-byte launch header (offset not 512-aligned)', async () => {
    const img = testImages();
    const dir = target('legacy-header');
    await using _m = await mountPartition(img.legacyHeader, dir, { fstype: 'squashfs', offset: img.legacyHeaderOffset });
    expect(fs.readFileSync(path.join(dir, 'etc', 'hello.txt'), 'utf8')).to.equal(img.files['etc/hello.txt']);
  });

  it('defaults to ro, nosuid, nodev (in mountinfo) and read-only is enforced', async () => {
    const img = testImages();
    const dir = target('defaults');
    await using _m = await mountPartition(img.ext3, dir, { fstype: 'ext3' });
    const e = (await entryAt(dir))!;
    expect(e.mountOptions).to.include.members(['ro', 'nosuid', 'nodev']);
    expect(e.superOptions).to.include('ro');
    let err: NodeJS.ErrnoException | undefined;
    try {
      fs.writeFileSync(path.join(dir, 'new-file'), 'x');
    } catch (e2) {
      err = e2 as NodeJS.ErrnoException;
    }
    expect(err?.code).to.equal('EROFS');
  });

  it('mounts read-write, exec, suid when asked (and writes reach the image)', async () => {
    const img = testImages();
    const copy = `${img.ext3}.rw-mount`;
    fs.copyFileSync(img.ext3, copy);
    const dir = target('rw');
    {
      await using _m = await mountPartition(copy, dir, { fstype: 'ext3', readOnly: false, nosuid: false, nodev: false, noexec: true, data: { errors: 'remount-ro' } });
      const e = (await entryAt(dir))!;
      expect(e.mountOptions).to.include.members(['rw', 'noexec']);
      expect(e.mountOptions).to.not.include.members(['nosuid', 'nodev']);
      expect(e.superOptions).to.include('errors=remount-ro');
      fs.writeFileSync(path.join(dir, 'written.txt'), 'persisted');
    }
    await using _again = await mountPartition(copy, dir, { fstype: 'ext3' });
    expect(fs.readFileSync(path.join(dir, 'written.txt'), 'utf8')).to.equal('persisted');
  });

  it('uses mount(2) when IMGMOUNT_MOUNT_API=legacy, with the same flags', async () => {
    const img = testImages();
    process.env.IMGMOUNT_MOUNT_API = 'legacy';
    const dir = target('legacy-api');
    await using m = await mountPartition(img.sif, dir, { fstype: 'squashfs', offset: img.sifParts.squashfs.offset, sizeLimit: img.sifParts.squashfs.size });
    expect(m.method).to.equal('legacy');
    expect((await entryAt(dir))!.mountOptions).to.include.members(['ro', 'nosuid', 'nodev']);
    expect(fs.readFileSync(path.join(dir, 'etc', 'hello.txt'), 'utf8')).to.equal(img.files['etc/hello.txt']);
  });

  it('works with the legacy loop ioctls and the legacy mount API together', async () => {
    const img = testImages();
    process.env.IMGMOUNT_MOUNT_API = 'legacy';
    process.env.IMGMOUNT_LOOP_API = 'legacy';
    const before = loopCounters().legacyAttaches;
    const dir = target('legacy-both');
    await using m = await mountPartition(img.sif, dir, { fstype: 'ext3', offset: img.sifParts.ext3.offset, sizeLimit: img.sifParts.ext3.size });
    expect(m.method).to.equal('legacy');
    expect(loopCounters().legacyAttaches).to.equal(before + 1);
    expect(fs.readFileSync(path.join(dir, 'bin/true.sh'), 'utf8')).to.equal(img.files['bin/true.sh']);
  });

  it('the loop device goes away with the unmount; unmount is idempotent', async () => {
    const img = testImages();
    const dir = target('autoclear');
    const m = await mountPartition(img.squashfs, dir, { fstype: 'squashfs' });
    expect(boundTo(img.squashfs)).to.have.length(1);
    const p = m.unmount();
    expect(m.unmount()).to.equal(p);
    await p;
    await m[Symbol.asyncDispose]();
    expect(m.unmounted).to.equal(true);
    expect(mountPoints()).to.not.include(dir);
    expect(boundTo(img.squashfs)).to.deep.equal([]);
  });

  it('close() releases it as every handle does: idempotent, one shared attempt, and a mount unmounted elsewhere counts as closed', async () => {
    const img = testImages();
    const dir = target('close');
    const m = await mountPartition(img.squashfs, dir, { fstype: 'squashfs' });
    expect(m.closed).to.equal(false);
    await Promise.all([m.close(), m.close()]);
    expect(m.closed).to.equal(true);
    expect(mountPoints()).to.not.include(dir);
    await m.close();
    await m[Symbol.asyncDispose]();
    const gone = target('close-gone');
    const m2 = await mountPartition(img.squashfs, gone, { fstype: 'squashfs' });
    await umount(gone);
    expect(mountPoints()).to.not.include(gone);
    await m2.close();
    expect(m2.closed).to.equal(true);
    // unmount() still tells: it was not mounted any more.
    const m3 = await mountPartition(img.squashfs, gone, { fstype: 'squashfs' });
    await umount(gone);
    expect(((await m3.unmount().catch((e: unknown) => e)) as ImgmountError).code).to.equal('ERR_NOT_MOUNTED');
    await m3.close();
    await eventually(() => boundTo(img.squashfs).length === 0, 3000, 'the loop devices to go');
  });

  it('a mount failure after the attach releases the loop device (bad superblock)', async () => {
    const img = testImages();
    for (const api of ['new', 'legacy'] as const) {
      const err = await mountPartition(img.squashfs, target(`bad-${api}`), { fstype: 'ext3', api }).catch((e: unknown) => e);
      expect(err, api).to.be.instanceOf(ImgmountError);
      expect((err as ImgmountError).code).to.equal('ERR_MOUNT_BAD_SUPERBLOCK');
      expect((err as ImgmountError).message).to.match(/ext3 image partition contains a bad superblock/);
      const cause = (err as ImgmountError).cause as SystemError;
      expect(cause).to.be.instanceOf(SystemError);
      expect(cause.code).to.equal('EINVAL');
      expect(cause.syscall).to.equal(api === 'new' ? 'fsconfig(FSCONFIG_CMD_CREATE)' : 'mount');
      expect(boundTo(img.squashfs), api).to.deep.equal([]);
    }
  });

  it('maps a corrupt squashfs to the bad-superblock message with the kernel messages of the fs context', async () => {
    const img = testImages();
    const err = await mountPartition(img.ext3, target('bad-sq'), { fstype: 'squashfs' }).catch((e: unknown) => e);
    expect((err as ImgmountError).code).to.equal('ERR_MOUNT_BAD_SUPERBLOCK');
    expect((err as ImgmountError).message).to.match(/bad superblock for squashfs image partition/);
    const msgs = ((err as ImgmountError).cause as SystemError).kernelMessages ?? [];
    expect(msgs.join('\n')).to.match(/squashfs|SQUASHFS/i);
    expect((err as ImgmountError).message).to.include('kernel:');
    expect(boundTo(img.ext3)).to.deep.equal([]);
  });

  it('reports a compression this kernel lacks (lzma squashfs) with the errno kept', async () => {
    const img = testImages();
    const err = await mountPartition(img.lzmaSquashfs, target('lzma'), { fstype: 'squashfs' }).catch((e: unknown) => e);
    expect((err as ImgmountError).code).to.equal('ERR_MOUNT_UNSUPPORTED_COMPRESSION');
    expect((err as ImgmountError).details?.errno).to.equal(-22);
    expect(((err as ImgmountError).cause as SystemError).kernelMessages?.join(' ')).to.match(/lzma/);
    expect(boundTo(img.lzmaSquashfs)).to.deep.equal([]);
    // mount(2) has no messages to read; the mapping still says what it probably is.
    const legacy = await mountPartition(img.lzmaSquashfs, target('lzma-legacy'), { fstype: 'squashfs', api: 'legacy' }).catch((e: unknown) => e);
    expect((legacy as ImgmountError).code).to.equal('ERR_MOUNT_BAD_SUPERBLOCK');
    expect((legacy as ImgmountError).message).to.match(/compression algorithm/);
  });

  it('reports a filesystem the kernel does not know as ERR_MOUNT_UNSUPPORTED_FS', async () => {
    const img = testImages();
    for (const api of ['new', 'legacy'] as const) {
      const err = await mountPartition(img.squashfs, target('nofs'), { fstype: 'imgmountfs', api }).catch((e: unknown) => e);
      expect((err as ImgmountError).code, api).to.equal('ERR_MOUNT_UNSUPPORTED_FS');
      expect(((err as ImgmountError).cause as SystemError).code).to.equal('ENODEV');
      expect((err as ImgmountError).message).to.match(/imgmountfs filesystem seems not enabled/);
    }
    expect(boundTo(img.squashfs)).to.deep.equal([]);
  });

  it('an abort that arrives while the kernel mounts undoes the mount and the device', async () => {
    const img = testImages();
    const dir = target('abort');
    const attached = loopCounters().attached;
    const ac = new AbortController();
    testHooks.pickDevice = () => {
      ac.abort(new Error('stop'));
      return undefined;
    };
    const err = await mountPartition(img.squashfs, dir, { fstype: 'squashfs', signal: ac.signal }).catch((e: unknown) => e);
    expect(err).to.be.instanceOf(AbortError);
    expect(loopCounters().attached).to.equal(attached + 1);
    expect(mountPoints()).to.not.include(dir);
    expect(boundTo(img.squashfs)).to.deep.equal([]);
  });

  it('mounts an attached LoopDevice and leaves it to its owner', async () => {
    const img = testImages();
    const dir = target('from-device');
    const dev = await attachLoop(img.squashfs);
    try {
      const m = await mountPartition(dev, dir, { fstype: 'squashfs' });
      expect(m.loopDevice).to.equal(dev.path);
      await m.unmount();
      expect(boundTo(img.squashfs)).to.deep.equal([`loop${dev.number}`]);
    } finally {
      await dev.close();
    }
    expect(boundTo(img.squashfs)).to.deep.equal([]);
  });

  it('shared mounts of one partition use one loop device, released after the last unmount', async () => {
    const img = testImages();
    const a = await mountPartition(img.ext3, target('shared-a'), { fstype: 'ext3', loop: { shared: true } });
    const b = await mountPartition(img.ext3, target('shared-b'), { fstype: 'ext3', loop: { shared: true } });
    expect(b.loopNumber).to.equal(a.loopNumber);
    expect(boundTo(img.ext3)).to.have.length(1);
    await a.unmount();
    expect(boundTo(img.ext3)).to.have.length(1);
    await b.unmount();
    expect(boundTo(img.ext3)).to.deep.equal([]);
  });

  it('kill -9 of a process holding a mounted autoclear device: released once unmounted', async () => {
    const img = testImages();
    const dir = target('killed');
    const child = startChild({ op: 'mount', image: img.squashfs, target: dir, options: { fstype: 'squashfs' } });
    const ready = await child.next();
    expect(ready.ready).to.equal(true);
    child.proc.kill('SIGKILL');
    await child.finish();
    // The mount (in this mount namespace, inherited by the child) keeps the device alive.
    expect(mountPoints()).to.include(dir);
    expect(boundTo(img.squashfs)).to.deep.equal([`loop${ready.loopNumber as number}`]);
    await umount(dir);
    await eventually(() => boundTo(img.squashfs).length === 0, 3000, 'the autoclear device to go');
  });

  it('kill -9 of a process holding an attached autoclear device releases it', async () => {
    const img = testImages();
    const child = startChild({ op: 'attach', image: img.ext3, count: 2 });
    const ready = await child.next();
    expect((ready.devices as unknown[]).length).to.equal(2);
    expect(boundTo(img.ext3)).to.have.length(2);
    child.proc.kill('SIGKILL');
    await child.finish();
    await eventually(() => boundTo(img.ext3).length === 0, 3000, 'the autoclear devices to go');
  });
});

describe('kernel: MountFunc mount()/umount()', function () {
  before(function () {
    requireKernel(this);
  });

  it('mounts with numeric (uintptr) flags and named flags, through the new API where it can', async () => {
    const img = testImages();
    const dev = await attachLoop(img.squashfs);
    try {
      const a = target('func-num');
      const r = await mount(dev.path, a, 'squashfs', MS_RDONLY | 2 | 4, '');
      expect(r.method).to.equal('new');
      expect((await entryAt(a))!.mountOptions).to.include.members(['ro', 'nosuid', 'nodev']);
      const b = target('func-named');
      const r2 = await mount(dev.path, b, 'squashfs', ['ro', 'noexec'], null, { api: 'legacy' });
      expect(r2.method).to.equal('legacy');
      expect((await entryAt(b))!.mountOptions).to.include.members(['ro', 'noexec']);
      const c = target('func-obj');
      await mount(dev.path, c, 'squashfs', { ro: true, nodev: true }, null);
      expect((await entryAt(c))!.mountOptions).to.include.members(['ro', 'nodev']);
      await umount(a);
      await umount(b, ['detach']);
      await umount(c, 0);
      for (const t of [a, b, c]) expect(mountPoints()).to.not.include(t);
    } finally {
      await dev.close();
    }
  });

  it('keeps the subtype of a "type.subtype" filesystem with both APIs (fuse.imgmount-test)', async () => {
    for (const api of ['new', 'legacy'] as const) {
      const dir = target(`fuse-subtype-${api}`);
      const fuse = fs.openSync('/dev/fuse', 'r+');
      try {
        const r = await mount('imgmount-test', dir, 'fuse.imgmount-test', ['nosuid', 'nodev'], `fd=${fuse},rootmode=40000,user_id=0,group_id=0`, { api });
        expect(r.method).to.equal(api);
        expect((await entryAt(dir))!.fstype).to.equal('fuse.imgmount-test');
      } finally {
        fs.closeSync(fuse); // no daemon: closing the connection lets the unmount through
        await umount(dir, ['detach']).catch(() => undefined);
      }
      expect(mountPoints()).to.not.include(dir);
    }
  });

  it('does bind mounts (mount(2) only) and reports ERR_NOT_MOUNTED for a path that is not a mount point', async () => {
    const img = testImages();
    const dst = target('bind');
    const r = await mount(img.tree, dst, null, MS_BIND, null);
    try {
      expect(r.method).to.equal('legacy');
      expect(fs.readFileSync(path.join(dst, 'etc', 'hello.txt'), 'utf8')).to.equal(img.files['etc/hello.txt']);
    } finally {
      await umount(dst);
    }
    const err = await umount(dst).catch((e: unknown) => e);
    expect((err as ImgmountError).code).to.equal('ERR_NOT_MOUNTED');
    expect(((err as ImgmountError).cause as SystemError).code).to.equal('EINVAL');
  });

  it('rejects bad flags before calling the kernel', async () => {
    const err = await mount('/dev/null', '/tmp', 'squashfs', ['readonly' as never]).catch((e: unknown) => e);
    expect((err as { code?: string }).code).to.equal('ERR_INVALID_ARG_VALUE');
  });

});

describe('kernel: fallbacks when the kernel (or a seccomp filter) lacks the new interfaces', function () {
  let deny = '';
  before(function () {
    requireKernel(this);
    if (process.arch !== 'x64') {
      skip(this, `the seccomp test filter is written for x86_64, this is ${process.arch}`);
    }
    deny = path.join(path.dirname(testImages().tree), 'deny-syscalls');
    try {
      execFileSync('cc', ['-O2', '-o', deny, path.join(repoRoot, 'test', 'support', 'deny-syscalls.c')]);
    } catch (err) {
      skip(this, `cannot build the seccomp test helper with cc: ${(err as Error).message.split('\n')[0]}`);
    }
  });

  for (const errno of ['ENOSYS', 'EPERM'] as const) {
    it(`probes, memoises and falls back to mount(2) and LOOP_SET_FD when the new calls give ${errno}`, async () => {
      const img = testImages();
      const dir = target(`fallback-${errno}`);
      const part = img.sifParts.ext3;
      const child = startChild(
        { op: 'mount', image: img.sif, target: dir, options: { fstype: 'ext3', offset: part.offset, sizeLimit: part.size } },
        [deny, '--new-mount-api', errno, '--loop-configure', '--'],
      );
      const r = await child.next();
      try {
        expect(r.error).to.equal(undefined);
        expect(r.method).to.equal('legacy');
        expect((r.counters as { legacyAttaches: number }).legacyAttaches).to.equal(1);
        const e = (await entryAt(dir))!;
        expect(e.fstype).to.equal('ext3');
        expect(e.mountOptions).to.include.members(['ro', 'nosuid', 'nodev']);
        expect(fs.readFileSync(path.join(dir, 'etc', 'hello.txt'), 'utf8')).to.equal(img.files['etc/hello.txt']);
      } finally {
        expect(await child.finish()).to.equal(0);
      }
      expect(mountPoints()).to.not.include(dir);
      expect(boundTo(img.sif)).to.deep.equal([]);
    });
  }

  it('capabilities() tells missing from filtered, and an ID map is refused with ERR_IDMAP_UNSUPPORTED', async () => {
    const img = testImages();
    for (const [errno, support] of [['ENOSYS', 'missing'], ['EPERM', 'filtered']] as const) {
      const child = startChild({ op: 'capabilities', image: img.squashfs, target: target('caps') }, [deny, '--new-mount-api', errno, '--loop-configure', '--']);
      const r = await child.next();
      await child.finish();
      const caps = r.caps as { newMountApi: string; mountSetattr: string; loopConfigure: boolean; idmap: Record<string, boolean> };
      expect(caps.newMountApi).to.equal(support);
      expect(caps.mountSetattr).to.equal(support);
      expect(caps.loopConfigure).to.equal(false);
      expect(Object.values(caps.idmap).some(Boolean)).to.equal(false);
      expect(r.idmap).to.equal('ERR_IDMAP_UNSUPPORTED');
    }
    expect(boundTo(img.squashfs)).to.deep.equal([]);
  });
});
