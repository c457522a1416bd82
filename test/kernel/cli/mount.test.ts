// `imgmount mount | umount | root` as an operator runs them: each a separate process, the
// mounts outliving the command, `umount` releasing everything from another process.
import { expect } from 'chai';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { findMountRecord } from '../../../lib/drivers/mount-record';
import { capabilities, findMounts, readMountInfo } from '../../../lib/mount';
import { fixture } from '../../support/fixtures';
import { mountDir } from '../../support/images';
import { eventually, requireKernel } from '../../support/kernel';
import { boundLoops, registerMountPoint } from '../../support/leaks';
import { testTmp } from '../../support/hooks';
import { repoRoot } from '../../support/paths';
import { skip } from '../../support/skip';

const bin = path.join(repoRoot, 'bin', 'imgmount.js');

function imgmount(...args: string[]) {
  return imgmountWith({}, ...args);
}

function imgmountWith(env: Record<string, string>, ...args: string[]) {
  const r = spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8', env: { ...process.env, ...env } });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

async function mountsUnder(dir: string) {
  return (await readMountInfo()).filter((m) => m.mountPoint === dir || m.mountPoint.startsWith(dir + '/'));
}

describe('kernel: imgmount mount | umount | root', function () {
  before(function () {
    requireKernel(this);
  });

  it('mount (kernel driver) prints what it did; umount from another process releases mount and loop device', async () => {
    const dir = registerMountPoint(mountDir('cli-mount'));
    const sif = fixture('sif-basic.sif');
    const r = imgmount('mount', '--driver', 'kernel', sif, dir);
    expect(r.status, r.stderr).to.equal(0);
    expect(r.stdout).to.match(new RegExp(`^${dir}: squashfs, read-only, kernel driver via /dev/loop\\d+\\n$`));
    expect(fs.readFileSync(path.join(dir, 'etc/hello.txt'), 'utf8')).to.equal('hello from imgmount\n');
    const m = findMounts(await readMountInfo(), { mountPoint: dir })[0]!;
    expect(m.mountOptions).to.include.members(['ro', 'nosuid', 'nodev']);
    expect(imgmount('umount', dir).status).to.equal(0);
    expect(await mountsUnder(dir)).to.deep.equal([]);
    await eventually(() => !boundLoops().some((l) => l.backingFile === sif), 3000, 'the loop device to go');
    const again = imgmount('umount', dir);
    expect(again.status).to.equal(1);
    expect(again.stderr).to.match(/is not a mount point/);
  });

  it('mount --writable-tmpfs --json: one overlay over detached layers; umount releases it, its loop device and the record', async function () {
    if (!(await capabilities()).overlayLayersByFd) return skip(this, 'this kernel does not take detached mounts as overlay layers (the next test covers the session directory)');
    const dir = registerMountPoint(mountDir('cli-tmpfs-fd'));
    const sif = fixture('sif-basic.sif');
    const r = imgmount('mount', '--writable-tmpfs', '--json', sif, dir);
    expect(r.status, r.stderr).to.equal(0);
    const out = JSON.parse(r.stdout) as { root: { path: string; readonly: boolean }; mounts: Array<{ fstype: string; loopDevice: string | null }> };
    expect(out.root).to.deep.equal({ path: dir, readonly: false });
    expect(out.mounts.map((m) => m.fstype)).to.deep.equal(['overlay']);
    expect(out.mounts[0]!.loopDevice).to.match(/^\/dev\/loop\d+$/);
    fs.writeFileSync(path.join(dir, 'scratch.txt'), 'x');
    const record = (await findMountRecord(dir))!;
    expect(record.sessionDir).to.equal(undefined);
    expect(record.internalMounts).to.deep.equal([]);
    expect(imgmount('umount', dir).status).to.equal(0);
    expect(await mountsUnder(dir)).to.deep.equal([]);
    expect(await findMountRecord(dir)).to.equal(undefined);
    await eventually(() => !boundLoops().some((l) => l.backingFile === sif), 3000, 'the loop device to go');
  });

  it('mount --writable-tmpfs --json on the general path (mount(2)), then umount releases the overlay, its layers, the session dir and the record', async () => {
    const dir = registerMountPoint(mountDir('cli-tmpfs'));
    const imgmount = (...args: string[]) => imgmountWith({ IMGMOUNT_MOUNT_API: 'legacy' }, ...args);
    const r = imgmount('mount', '--writable-tmpfs', '--json', fixture('sif-basic.sif'), dir);
    expect(r.status, r.stderr).to.equal(0);
    const out = JSON.parse(r.stdout) as { root: { path: string; readonly: boolean }; mounts: Array<{ fstype: string }> };
    expect(out.root).to.deep.equal({ path: dir, readonly: false });
    expect(out.mounts.map((m) => m.fstype)).to.deep.equal(['tmpfs', 'squashfs', 'overlay']);
    fs.writeFileSync(path.join(dir, 'scratch.txt'), 'x');
    const record = await findMountRecord(dir);
    // The layers live in a session directory of the command's own, directly under <state dir>/sessions.
    expect(path.dirname(record!.sessionDir!)).to.equal(fs.realpathSync(path.join(process.env.IMGMOUNT_STATE_DIR!, 'sessions')));
    expect(path.basename(record!.sessionDir!)).to.match(/^root-/);
    expect(record!.internalMounts.map((p) => path.relative(record!.sessionDir!, p))).to.deep.equal(['lower', 'tmpfs']);
    expect(imgmount('umount', dir).status).to.equal(0);
    expect(await mountsUnder(dir)).to.deep.equal([]);
    expect(await mountsUnder(record!.sessionDir!)).to.deep.equal([]);
    expect(fs.existsSync(record!.sessionDir!)).to.equal(false);
    expect(await findMountRecord(dir)).to.equal(undefined);
  });

  it('root prints the OCI runtime-spec Root', async () => {
    const dir = registerMountPoint(mountDir('cli-root'));
    const r = imgmount('root', '--driver', 'kernel', fixture('hdr-lf.sqfs'), dir);
    expect(r.status, r.stderr).to.equal(0);
    expect(JSON.parse(r.stdout)).to.deep.equal({ path: dir, readonly: true });
    expect(imgmount('umount', dir).status).to.equal(0);
  });

  it('mount --partition mounts one data partition', async () => {
    const dir = registerMountPoint(mountDir('cli-part'));
    const r = imgmount('mount', '--driver', 'kernel', '--partition', 'scratch', fixture('sif-data.sif'), dir);
    expect(r.status, r.stderr).to.equal(0);
    expect(r.stdout).to.match(/: ext3, read-only, kernel driver/);
    expect(imgmount('umount', dir).status).to.equal(0);
  });

  it('--trusted and --kernel-extfs reach the parser policy (ext3 by fuse2fs and an untrusted squashfs by squashfuse otherwise)', async () => {
    const dir = registerMountPoint(mountDir('cli-policy'));
    const mountOnce = async (args: string[], expected: RegExp) => {
      const r = imgmount('mount', ...args, dir);
      expect(r.status, r.stderr).to.equal(0);
      expect(r.stdout, args.join(' ')).to.match(expected);
      expect(imgmount('umount', dir).status).to.equal(0);
      expect(await mountsUnder(dir)).to.deep.equal([]);
    };
    const sif = fixture('sif-data.sif');
    await mountOnce(['--partition', 'scratch', sif], /: fuse\.ext4, read-only, fuse driver served by fuse2fs\[\d+\]\n$/);
    await mountOnce(['--kernel-extfs', '--partition', 'scratch', sif], /: ext3, read-only, kernel driver via \/dev\/loop\d+\n$/);
    await mountOnce(['--trusted', '--partition', 'scratch', sif], /: ext3, read-only, kernel driver via \/dev\/loop\d+\n$/);
    const notRoots = path.join(testTmp, 'cli-policy-nobody.sqfs');
    fs.copyFileSync(fixture('sq-gzip.sqfs'), notRoots);
    fs.chownSync(notRoots, 65534, 65534);
    await mountOnce([notRoots], /: fuse\.squashfuse_ll, read-only, fuse driver served by squashfuse_ll\[\d+\]\n$/);
    await mountOnce(['--trusted', notRoots], /: squashfs, read-only, kernel driver via \/dev\/loop\d+\n$/);
    const refused = imgmount('mount', '--trusted', '--no-kernel-squashfs', '--driver', 'kernel', notRoots, dir);
    expect(refused.status).to.equal(1);
    expect(refused.stderr).to.match(/^imgmount: no kernel driver can mount squashfs .*\(allowKernelSquashfs: false\)\n$/);
    await eventually(() => !boundLoops().some((l) => l.backingFile === notRoots), 3000, 'the loop devices to go');
  });

  it('errors are one line on stderr and leave nothing mounted', async () => {
    const dir = registerMountPoint(mountDir('cli-errors'));
    const lzma = imgmount('mount', '--driver', 'kernel', fixture('sq-lzma.sqfs'), dir);
    expect(lzma.status).to.equal(1);
    expect(lzma.stderr).to.match(/^imgmount: no kernel driver can mount squashfs partition .*cannot decompress lzma/);
    const w = imgmount('mount', '--writable', fixture('sq-gzip.sqfs'), dir);
    expect(w.status).to.equal(1);
    expect(w.stderr).to.match(/squashfs is a read-only filesystem/);
    expect(imgmount('mount', '--driver', 'bogus', fixture('sq-gzip.sqfs'), dir).status).to.equal(2);
    expect(imgmount('mount', fixture('sq-gzip.sqfs')).status).to.equal(2);
    expect(await mountsUnder(dir)).to.deep.equal([]);
  });
});
