// Namespaces on the real kernel: ID-mapped mounts, capabilities(), mounting into another
// process's mount namespace (and a rootless container's user + mount namespaces), and
// starting a program inside a user namespace through the helper.
import { expect } from 'chai';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { AbortError, ImgmountError, SystemError } from '../../../lib/errors';
import { testHooks } from '../../../lib/loop/internal';
import { capabilities, findMounts, mountPartition, readMountInfo } from '../../../lib/mount';
import { NamespaceFd, createUserNamespace, spawnInNamespaces } from '../../../lib/ns';
import { mountInNamespace, moveMountIntoNamespace, unmountInNamespace } from '../../../lib/mount';
import { closeFd } from '../../../lib/io/fd';
import { native } from '../../../lib/native/binding';
import { finished } from 'node:stream/promises';
import { readOutput, trackExit } from '../../../lib/util/child-exit';
import { mountDir, testImages } from '../../support/images';
import { eventually, requireKernel, requireUserNamespaces, startNamespaceHolder, stopHolder as stop } from '../../support/kernel';
import { boundLoops, mountPoints, registerMountPoint } from '../../support/leaks';

const MAP = { uidMap: [{ inside: 0, outside: 100000, count: 65536 }], gidMap: [{ inside: 0, outside: 200000, count: 65536 }] };

function boundTo(file: string): string[] {
  return boundLoops().filter((l) => l.backingFile === file).map((l) => l.name);
}

describe('kernel: ID-mapped mounts and capabilities', function () {
  before(function () {
    requireKernel(this);
    requireUserNamespaces(this);
  });

  // What this kernel (6.x) does, independent of imgmount's probe: LOOP_CONFIGURE (5.8), the
  // new mount API (5.2) and mount_setattr (5.12) exist; squashfs and ext4 allow ID-mapped
  // mounts (FS_ALLOW_IDMAP), while the "ext3" filesystem type that ext4 registers does not.
  // The mounts below prove each; capabilities() must then report the same.
  const IDMAP_WORKS = { squashfs: true, ext4: true, ext3: false } as const;

  it('capabilities() reports loop, mount API, user namespaces and per-filesystem ID-map support as this kernel has them', async () => {
    const caps = await capabilities();
    expect(caps.root).to.equal(true);
    expect(caps.loopControl).to.equal(true);
    expect(caps.loopConfigure).to.equal(true);
    expect(caps.newMountApi).to.equal('supported');
    expect(caps.mountSetattr).to.equal('supported');
    expect(caps.userNamespaces).to.equal(true);
    expect(caps.filesystems).to.include.members(['squashfs', 'ext4', 'ext3']);
    expect(caps.idmap).to.deep.include(IDMAP_WORKS);
    expect(caps.fuse.available).to.equal(fs.existsSync('/dev/fuse'));
    expect(caps.notes).to.deep.equal([]);
    expect(await capabilities()).to.equal(caps); // memoised
    expect(boundLoops().filter((l) => l.backingFile.includes('imgmount-probe-'))).to.deep.equal([]);
  });

  for (const [fstype, image] of [
    ['squashfs', 'squashfs'],
    ['ext4', 'ext3'],
    ['ext3', 'ext3'],
  ] as const) {
    const works = IDMAP_WORKS[fstype];
    it(
      works
        ? `an ID-mapped ${fstype} mount of a${image === 'ext3' ? 'n ext3' : ' squashfs'} image works and shows mapped owners; capabilities() says so`
        : `an ID-mapped ${fstype} mount is refused with ERR_IDMAP_UNSUPPORTED naming ext4; capabilities() says so`,
      async () => {
        const img = testImages();
        await using userns = await createUserNamespace(MAP);
        const dir = registerMountPoint(mountDir(`idmap-${fstype}`));
        const file = image === 'squashfs' ? img.squashfs : img.ext3;
        const result = await mountPartition(file, dir, { fstype, idmap: userns }).catch((e: unknown) => e);
        if (works) {
          expect(result, String(result)).to.not.be.instanceOf(Error);
          await using m = result as Awaited<ReturnType<typeof mountPartition>>;
          expect(m.idmapped).to.equal(true);
          const st = fs.statSync(path.join(dir, 'etc', 'hello.txt'));
          expect(st.uid).to.equal(100000);
          expect(st.gid).to.equal(200000);
          expect(fs.readFileSync(path.join(dir, 'etc', 'hello.txt'), 'utf8')).to.equal(img.files['etc/hello.txt']);
          // The image itself is root-owned: an unmapped mount shows 0.
          const plain = registerMountPoint(mountDir(`plain-${fstype}`));
          await using _p = await mountPartition(file, plain, { fstype });
          expect(fs.statSync(path.join(plain, 'etc', 'hello.txt')).uid).to.equal(0);
        } else {
          expect(result).to.be.instanceOf(ImgmountError);
          expect((result as ImgmountError).code).to.equal('ERR_IDMAP_UNSUPPORTED');
          const cause = (result as ImgmountError).cause as SystemError;
          expect(cause.syscall).to.equal('mount_setattr(MOUNT_ATTR_IDMAP)');
          expect(cause.code).to.equal('EINVAL');
          expect((result as ImgmountError).message).to.match(/fstype 'ext4'/);
          expect(mountPoints()).to.not.include(dir);
        }
        expect(boundTo(file).length).to.equal(0);
        // The probe agrees with what the kernel just did.
        expect((await capabilities()).idmap[fstype]).to.equal(works);
      },
    );
  }

  it('takes the user namespace as a pid, and refuses an ID map without the new mount API', async () => {
    const img = testImages();
    const holder = await startNamespaceHolder(['-U', '-m']);
    try {
      fs.writeFileSync(`/proc/${holder.pid}/uid_map`, '0 300000 65536\n');
      fs.writeFileSync(`/proc/${holder.pid}/gid_map`, '0 300000 65536\n');
      const dir = registerMountPoint(mountDir('idmap-pid'));
      {
        // ID-mapped squashfs works on this kernel (see IDMAP_WORKS): no condition on the probe.
        await using _m = await mountPartition(img.squashfs, dir, { fstype: 'squashfs', idmap: { pid: holder.pid! } });
        expect(fs.statSync(path.join(dir, 'etc', 'hello.txt')).uid).to.equal(300000);
      }
      const err = await mountPartition(img.squashfs, dir, { fstype: 'squashfs', idmap: { pid: holder.pid! }, api: 'legacy' }).catch((e: unknown) => e);
      expect((err as ImgmountError).code).to.equal('ERR_IDMAP_UNSUPPORTED');
      expect(boundTo(img.squashfs)).to.deep.equal([]);
    } finally {
      await stop(holder);
    }
  });

  it('NamespaceFd checks the kind of namespace an fd refers to', async () => {
    const user = await NamespaceFd.fromPid(process.pid, 'user');
    try {
      expect(user.type).to.equal('user');
      expect(await user.isCurrent()).to.equal(true);
      const err = await NamespaceFd.fromFd(user.fd, 'mnt').catch((e: unknown) => e);
      expect((err as ImgmountError).code).to.equal('ERR_NAMESPACE');
      const fd = fs.openSync('/etc/hostname', 'r');
      try {
        const notNs = await NamespaceFd.fromFd(fd).catch((e: unknown) => e);
        expect((notNs as ImgmountError).code).to.equal('ERR_NAMESPACE');
      } finally {
        fs.closeSync(fd);
      }
    } finally {
      await user.close();
    }
  });
});

describe('kernel: mounting into other namespaces', function () {
  before(function () {
    requireKernel(this);
  });
  afterEach(() => {
    delete process.env.IMGMOUNT_MOUNT_API;
  });

  for (const api of ['new', 'legacy'] as const) {
    it(`mounts into another process's mount namespace (${api} API): visible there, not here`, async () => {
      const img = testImages();
      if (api === 'legacy') process.env.IMGMOUNT_MOUNT_API = 'legacy';
      const holder = await startNamespaceHolder(['-m', '--propagation', 'private']);
      const dir = registerMountPoint(mountDir(`in-ns-${api}`));
      try {
        const m = await mountInNamespace({ pid: holder.pid! }, img.sif, dir, {
          fstype: 'squashfs',
          offset: img.sifParts.squashfs.offset,
          sizeLimit: img.sifParts.squashfs.size,
        });
        expect(m.method).to.equal(api);
        const there = findMounts(await readMountInfo(holder.pid!), { mountPoint: dir });
        expect(there).to.have.length(1);
        expect(there[0]!.fstype).to.equal('squashfs');
        expect(there[0]!.mountOptions).to.include.members(['ro', 'nosuid', 'nodev']);
        expect(mountPoints()).to.not.include(dir);
        expect(fs.readFileSync(`/proc/${holder.pid}/root${dir}/etc/hello.txt`, 'utf8')).to.equal(img.files['etc/hello.txt']);
        expect(fs.existsSync(path.join(dir, 'etc', 'hello.txt'))).to.equal(false);
        expect(boundTo(img.sif)).to.have.length(1);

        expect(m.closed).to.equal(false);
        await Promise.all([m.close(), m.close()]);
        expect(m.closed).to.equal(true);
        await m.unmount(); // idempotent
        await m[Symbol.asyncDispose]();
        expect(findMounts(await readMountInfo(holder.pid!), { mountPoint: dir })).to.have.length(0);
        await eventually(() => boundTo(img.sif).length === 0, 3000, 'the loop device to go');
      } finally {
        await stop(holder);
      }
    });
  }

  it('mounts into a rootless container (its user namespace, then its mount namespace)', async function () {
    requireUserNamespaces(this);
    const img = testImages();
    const holder = await startNamespaceHolder(['-U', '-m', '-r', '--propagation', 'private']);
    const dir = registerMountPoint(mountDir('rootless'));
    try {
      const userns = await NamespaceFd.fromPid(holder.pid!, 'user');
      const mntns = await NamespaceFd.fromPid(holder.pid!, 'mnt');
      try {
        expect(await userns.isCurrent()).to.equal(false);
        await using m = await mountInNamespace({ userns, mntns }, img.ext3, dir, { fstype: 'ext3' });
        const there = findMounts(await readMountInfo(holder.pid!), { mountPoint: dir });
        expect(there).to.have.length(1);
        expect(there[0]!.fstype).to.equal('ext3');
        expect(mountPoints()).to.not.include(dir);
        expect(fs.readFileSync(`/proc/${holder.pid}/root${dir}/bin/true.sh`, 'utf8')).to.equal(img.files['bin/true.sh']);
        void m;
      } finally {
        await userns.close();
        await mntns.close();
      }
      expect(findMounts(await readMountInfo(holder.pid!), { mountPoint: dir })).to.have.length(0);
    } finally {
      await stop(holder);
    }
    await eventually(() => boundTo(img.ext3).length === 0, 3000, 'the loop device to go');
  });

  it('a mount left in a namespace goes away with it, and so does its loop device', async () => {
    const img = testImages();
    const holder = await startNamespaceHolder(['-m', '--propagation', 'private']);
    const dir = registerMountPoint(mountDir('ns-dies'));
    await mountInNamespace({ pid: holder.pid! }, img.squashfs, dir, { fstype: 'squashfs' });
    expect(boundTo(img.squashfs)).to.have.length(1);
    await stop(holder);
    await eventually(() => boundTo(img.squashfs).length === 0, 5000, 'the namespace and its loop device to go');
  });

  it('an abort while mounting into a namespace leaves nothing there or here', async () => {
    const img = testImages();
    const holder = await startNamespaceHolder(['-m', '--propagation', 'private']);
    const dir = registerMountPoint(mountDir('ns-abort'));
    const ac = new AbortController();
    testHooks.pickDevice = () => {
      ac.abort(new Error('stop'));
      return undefined;
    };
    try {
      const err = await mountInNamespace({ pid: holder.pid! }, img.squashfs, dir, { fstype: 'squashfs', signal: ac.signal }).catch((e: unknown) => e);
      expect(err).to.be.instanceOf(AbortError);
      expect(findMounts(await readMountInfo(holder.pid!), { mountPoint: dir })).to.have.length(0);
      expect(mountPoints()).to.not.include(dir);
      expect(boundTo(img.squashfs)).to.deep.equal([]);
    } finally {
      delete testHooks.pickDevice;
      await stop(holder);
    }
  });

  it('errors from inside the helper come back with errno, the failing step and the target', async () => {
    const img = testImages();
    const holder = await startNamespaceHolder(['-m', '--propagation', 'private']);
    try {
      const missing = path.join(mountDir('gone'), 'does', 'not', 'exist');
      const err = await mountInNamespace({ pid: holder.pid! }, img.squashfs, missing, { fstype: 'squashfs' }).catch((e: unknown) => e);
      expect(err).to.be.instanceOf(SystemError);
      expect((err as SystemError).code).to.equal('ENOENT');
      // The target is resolved inside the namespace's root before anything moves.
      expect((err as SystemError).syscall).to.equal('openat2(RESOLVE_IN_ROOT)');
      expect((err as SystemError).dest).to.equal(missing);
      expect((err as SystemError).message).to.match(/in the namespaces of pid/);
      expect(boundTo(img.squashfs)).to.deep.equal([]);

      const notMounted = await unmountInNamespace({ pid: holder.pid! }, '/tmp').catch((e: unknown) => e);
      expect((notMounted as ImgmountError).code).to.equal('ERR_NOT_MOUNTED');
    } finally {
      await stop(holder);
    }
    const gone = await mountInNamespace({ pid: holder.pid! }, img.squashfs, '/tmp', { fstype: 'squashfs' }).catch((e: unknown) => e);
    expect((gone as NodeJS.ErrnoException).code).to.equal('ENOENT');
  });

  it('moves a caller-made detached mount into a namespace', async () => {
    const img = testImages();
    const holder = await startNamespaceHolder(['-m', '--propagation', 'private']);
    const src = registerMountPoint(mountDir('tree-src'));
    const dir = registerMountPoint(mountDir('moved'));
    try {
      await using _m = await mountPartition(img.squashfs, src, { fstype: 'squashfs' });
      const fd = await native((b) => b.openTree(-1, src, 1 /* OPEN_TREE_CLONE */));
      try {
        await moveMountIntoNamespace({ pid: holder.pid! }, fd, dir);
      } finally {
        await closeFd(fd);
      }
      expect(findMounts(await readMountInfo(holder.pid!), { mountPoint: dir })).to.have.length(1);
      expect(mountPoints()).to.not.include(dir);
      await unmountInNamespace({ pid: holder.pid! }, dir);
      expect(findMounts(await readMountInfo(holder.pid!), { mountPoint: dir })).to.have.length(0);
    } finally {
      await stop(holder);
    }
  });

  it('a program started in a namespace that is done before anyone listens keeps its output and exit status', async function () {
    requireUserNamespaces(this);
    await using userns = await createUserNamespace(MAP);
    const child = await spawnInNamespaces({ userns }, 'sh', ['-c', 'echo out; echo err >&2; exit 3']);
    // Nobody reads its output until it is gone: wait for its exit (the event, not a sleep), then
    // for everything it wrote to have been taken in, and only then listen.
    await trackExit(child).exited;
    await trackExit(child).closed;
    let err = '';
    child.stderr!.setEncoding('utf8').on('data', (d: string) => (err += d));
    const { code, stdout } = await readOutput(child);
    await finished(child.stderr!);
    expect([code, stdout, err]).to.deep.equal([3, 'out\n', 'err\n']);
  });

  it('starts a program inside a user namespace (for FUSE helpers) and reports exec failures', async function () {
    requireUserNamespaces(this);
    await using userns = await createUserNamespace(MAP);
    const child = await spawnInNamespaces({ userns }, 'cat', ['/proc/self/uid_map', '/proc/self/gid_map']);
    const { code, stdout: out } = await readOutput(child); // it may be done already
    expect(code).to.equal(0);
    expect(out.trim().split(/\s+/).map(Number)).to.deep.equal([0, 100000, 65536, 0, 200000, 65536]);

    // Inherited fds land at 3, 4, ...
    const fd = fs.openSync(testImages().squashfs, 'r');
    try {
      const c2 = await spawnInNamespaces({ userns }, 'sh', ['-c', 'head -c 4 <&3'], { fds: [fd] });
      expect((await readOutput(c2)).stdout).to.equal('hsqs');
    } finally {
      fs.closeSync(fd);
    }

    const err = await spawnInNamespaces({ userns }, '/nonexistent/program').catch((e: unknown) => e);
    expect(err).to.be.instanceOf(SystemError);
    expect((err as SystemError).code).to.equal('ENOENT');
    expect((err as SystemError).syscall).to.equal('execve');
  });
});
