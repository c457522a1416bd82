// root() with namespace: { userns, mntns } given as the caller holds them — NamespaceFd
// objects, raw fds, /proc paths — not as { pid }. The root is
// built here and lands in the namespace named (checked in that process's mountinfo, read by the
// test), nothing of it stays here, close() takes it away there, and fds the caller passed stay
// the caller's.
import { expect } from 'chai';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { init } from '../../../lib';
import { NamespaceFd } from '../../../lib/ns';
import { root } from '../../../lib/root';
import { fixture } from '../../support/fixtures';
import { testTmp } from '../../support/hooks';
import { FILES, mountDir } from '../../support/images';
import { eventually, requireKernel, requireUserNamespaces, startNamespaceHolder, stopHolder } from '../../support/kernel';
import { kernelMountsAt } from '../../support/kernel-mountinfo';
import { boundLoops } from '../../support/leaks';

const HELLO = FILES['etc/hello.txt']!;

function copyOf(name: string): string {
  const to = path.join(testTmp, `nsref-${process.hrtime.bigint()}-${name}`);
  fs.copyFileSync(fixture(name), to);
  fs.chmodSync(to, 0o644);
  return to;
}

function boundTo(file: string): string[] {
  return boundLoops().filter((l) => l.backingFile === file).map((l) => l.name);
}

describe('kernel: root() into namespaces given as fds and paths', function () {
  before(function () {
    requireKernel(this);
    requireUserNamespaces(this);
  });

  it('{ userns: NamespaceFd, mntns: "/proc/PID/ns/mnt" }: a rootless container gets the root; close() takes it away there', async () => {
    const sif = copyOf('sif-basic.sif');
    const holder = await startNamespaceHolder(['-U', '-r', '-m', '--propagation', 'private']);
    const pid = holder.pid!;
    const dir = mountDir('nsref-fd-path');
    try {
      await using userns = await NamespaceFd.fromPid(pid, 'user');
      await using img = await init(sif);
      const r = await root(img, dir, { driver: 'kernel', namespace: { userns, mntns: `/proc/${pid}/ns/mnt` } });
      try {
        expect(r.root).to.deep.equal({ path: dir, readonly: true });
        const there = kernelMountsAt(dir, pid);
        expect(there.map((m) => m.fstype)).to.deep.equal(['squashfs']);
        expect(there[0]!.mountOptions).to.include.members(['ro', 'nosuid', 'nodev']);
        expect(kernelMountsAt(dir)).to.deep.equal([]);
        expect(fs.readFileSync(`/proc/${pid}/root${dir}/etc/hello.txt`, 'utf8')).to.equal(HELLO);
      } finally {
        await r.close();
      }
      expect(kernelMountsAt(dir, pid)).to.deep.equal([]);
      expect(userns.closed).to.equal(false); // the caller's NamespaceFd stays open
      expect(fs.readlinkSync(`/proc/self/fd/${userns.fd}`)).to.equal(fs.readlinkSync(`/proc/${pid}/ns/user`));
    } finally {
      await stopHolder(holder);
    }
    await eventually(() => boundTo(sif).length === 0, 3000, 'the loop device to autoclear');
  });

  it('{ userns: fd, mntns: fd } (raw fds) with a tmpfs overlay: built here, moved there, writable there; the fds stay open', async () => {
    const sif = copyOf('sif-basic.sif');
    const holder = await startNamespaceHolder(['-U', '-r', '-m', '--propagation', 'private']);
    const pid = holder.pid!;
    const dir = mountDir('nsref-rawfd');
    const userFd = fs.openSync(`/proc/${pid}/ns/user`, 'r');
    const mntFd = fs.openSync(`/proc/${pid}/ns/mnt`, 'r');
    try {
      await using img = await init(sif);
      const r = await root(img, dir, { driver: 'kernel', writableTmpfs: true, namespace: { userns: userFd, mntns: mntFd } });
      try {
        expect(r.root).to.deep.equal({ path: dir, readonly: false });
        expect(kernelMountsAt(dir, pid).map((m) => m.fstype)).to.deep.equal(['overlay']);
        expect(kernelMountsAt(dir)).to.deep.equal([]);
        const there = `/proc/${pid}/root${dir}`;
        expect(fs.readFileSync(path.join(there, 'etc/hello.txt'), 'utf8')).to.equal(HELLO);
        // The container's root writes into the overlay (from inside its namespaces).
        execFileSync('nsenter', ['-t', String(pid), '-U', '-m', '--preserve-credentials', 'sh', '-c', `echo inside > ${dir}/etc/written.txt`]);
        expect(fs.readFileSync(path.join(there, 'etc/written.txt'), 'utf8')).to.equal('inside\n');
        // Nothing of the overlay's layers is left in our namespace.
        expect(fs.readFileSync('/proc/self/mountinfo', 'utf8')).to.not.match(/ - overlay /);
      } finally {
        await r.close();
      }
      expect(kernelMountsAt(dir, pid)).to.deep.equal([]);
      for (const [fd, type] of [[userFd, 'user'], [mntFd, 'mnt']] as const) expect(fs.readlinkSync(`/proc/self/fd/${fd}`)).to.equal(fs.readlinkSync(`/proc/${pid}/ns/${type}`));
    } finally {
      fs.closeSync(userFd);
      fs.closeSync(mntFd);
      await stopHolder(holder);
    }
    await eventually(() => boundTo(sif).length === 0, 3000, 'the loop device to go');
  });

  it('{ mntns: NamespaceFd } alone, with the FUSE driver: served from here, mounted there', async () => {
    const img0 = copyOf('sq-gzip.sqfs');
    const holder = await startNamespaceHolder(['-m', '--propagation', 'private']);
    const pid = holder.pid!;
    const dir = mountDir('nsref-fuse');
    try {
      await using mntns = await NamespaceFd.fromPath(`/proc/${pid}/ns/mnt`, 'mnt');
      await using img = await init(img0);
      const r = await root(img, dir, { driver: 'fuse', namespace: { mntns } });
      let helper = 0;
      try {
        helper = r.mounts[0]!.helpers[0]!.pid;
        const there = kernelMountsAt(dir, pid);
        expect(there.map((m) => m.fstype)).to.deep.equal(['fuse.squashfuse_ll']);
        expect(there[0]!.mountOptions).to.include.members(['ro', 'nosuid', 'nodev']);
        expect(kernelMountsAt(dir)).to.deep.equal([]);
        expect(fs.readFileSync(`/proc/${pid}/root${dir}/etc/hello.txt`, 'utf8')).to.equal(HELLO);
        // The helper is ours (our mount namespace), serving a mount in theirs.
        expect(fs.readlinkSync(`/proc/${helper}/ns/mnt`)).to.equal(fs.readlinkSync('/proc/self/ns/mnt'));
      } finally {
        await r.close();
      }
      expect(kernelMountsAt(dir, pid)).to.deep.equal([]);
      expect(fs.existsSync(`/proc/${helper}`)).to.equal(false);
      expect(mntns.closed).to.equal(false);
    } finally {
      await stopHolder(holder);
    }
  });
});
