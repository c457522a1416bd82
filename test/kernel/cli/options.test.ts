// `imgmount` options that had no test, each run as an operator would (bin/imgmount.js in a
// child process) and checked by its effect, read apart from the library where it can be:
// mountinfo of the process concerned, sysfs, the SIF descriptor bytes, debugfs on the image.
//   mount: --no-kernel-squashfs, --no-kernel-extfs, --key-file, --userns, --mntns (alone and
//          with --userns), --overlay (read-only and --writable), --id, --writable
//   loop:  attach --shared, --writable, --offset/--size; list --all
import { expect } from 'chai';
import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fixture } from '../../support/fixtures';
import { kernelMountsAt } from '../../support/kernel-mountinfo';
import { gocryptfsImage } from '../../support/gocryptfs-image';
import { testTmp } from '../../support/hooks';
import { FILES, mountDir } from '../../support/images';
import { eventually, requireKernel, requireUserNamespaces, startNamespaceHolder, stopHolder } from '../../support/kernel';
import { boundLoops, registerMountPoint } from '../../support/leaks';
import { repoRoot } from '../../support/paths';

const bin = path.join(repoRoot, 'bin', 'imgmount.js');
const HELLO = FILES['etc/hello.txt']!;

interface Run {
  status: number | null;
  stdout: string;
  stderr: string;
}

function imgmount(...args: string[]): Run {
  const r = spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8' });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** The command run in another process's mount namespace (nsenter -m: still root of ours). */
function imgmountInMntns(pid: number, ...args: string[]): Run {
  const r = spawnSync('nsenter', ['-t', String(pid), '-m', '--', process.execPath, bin, ...args], { encoding: 'utf8' });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

const mountsAt = kernelMountsAt;

function boundTo(file: string): string[] {
  return boundLoops().filter((l) => l.backingFile === file).map((l) => l.name);
}

function sysfs(dev: string, attr: string): string {
  return fs.readFileSync(`/sys/block/${path.basename(dev)}/${attr}`, 'utf8').trim();
}

/** Mount points of this file's tests; after a failed assertion, what is left there is released. */
const used: string[] = [];
function target(name: string): string {
  const d = registerMountPoint(mountDir(name));
  used.push(d);
  return d;
}

/** A private copy of a generated fixture (root-owned, 0644 unless told). */
let copies = 0;
function copyOf(name: string, mode = 0o644): string {
  const to = path.join(testTmp, `cli-opt-${++copies}-${path.basename(name)}`);
  fs.copyFileSync(fixture(name), to);
  fs.chmodSync(to, mode);
  return to;
}

/** A file inside an ext3 image, read by debugfs (e2fsprogs), not through any mount. */
function debugfsCat(image: string, file: string): string {
  return execFileSync('debugfs', ['-R', `cat ${file}`, image], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
}

function nsId(pid: number | 'self', type: 'user' | 'mnt'): string {
  return fs.readlinkSync(`/proc/${pid}/ns/${type}`);
}

/** SIF descriptor slot `i` of a file our writer made: offset field at 4096 + 585 i + 17. */
function sifSlotOffset(sif: string, slot: number): number {
  return Number(fs.readFileSync(sif).readBigInt64LE(4096 + 585 * slot + 17));
}

describe('kernel: imgmount command-line options', function () {
  before(function () {
    requireKernel(this);
  });
  afterEach(() => {
    for (const d of used.splice(0)) if (mountsAt(d).length) imgmount('umount', d);
  });

  describe('mount: parser policy', () => {
    it('--no-kernel-squashfs sends even a trusted squashfs to squashfuse; without it the kernel mounts it', async () => {
      const img = copyOf('sq-gzip.sqfs');
      const dir = target('cli-nks');
      const kernel = imgmount('mount', '--trusted', img, dir);
      expect(kernel.status, kernel.stderr).to.equal(0);
      expect(mountsAt(dir).map((m) => m.fstype)).to.deep.equal(['squashfs']);
      expect(imgmount('umount', dir).status).to.equal(0);
      const fuse = imgmount('mount', '--trusted', '--no-kernel-squashfs', img, dir);
      expect(fuse.status, fuse.stderr).to.equal(0);
      expect(fuse.stdout).to.match(new RegExp(`^${dir}: fuse\\.squashfuse\\S*, read-only, fuse driver served by squashfuse\\S*\\[\\d+\\]\\n$`));
      expect(mountsAt(dir).map((m) => m.fstype)).to.deep.equal(['fuse.squashfuse_ll']);
      expect(fs.readFileSync(path.join(dir, 'etc/hello.txt'), 'utf8')).to.equal(HELLO);
      expect(imgmount('umount', dir).status).to.equal(0);
      expect(mountsAt(dir)).to.deep.equal([]);
      await eventually(() => boundTo(img).length === 0, 3000, 'the loop device to go');
    });

    it('--no-kernel-extfs sends even a trusted ext3 partition to fuse2fs; without it the kernel mounts it', async () => {
      const sif = copyOf('sif-data.sif');
      const dir = target('cli-nke');
      const kernel = imgmount('mount', '--trusted', '--partition', 'scratch', sif, dir);
      expect(kernel.status, kernel.stderr).to.equal(0);
      expect(mountsAt(dir).map((m) => m.fstype)).to.deep.equal(['ext3']);
      expect(imgmount('umount', dir).status).to.equal(0);
      const fuse = imgmount('mount', '--trusted', '--no-kernel-extfs', '--partition', 'scratch', sif, dir);
      expect(fuse.status, fuse.stderr).to.equal(0);
      expect(fuse.stdout).to.match(/, read-only, fuse driver served by fuse2fs\[\d+\]\n$/);
      expect(mountsAt(dir).map((m) => m.fstype)).to.deep.equal(['fuse.ext4']); // fuse2fs names its subtype so
      expect(fs.readdirSync(dir)).to.include('lost+found'); // an ext3 file system, served
      expect(imgmount('umount', dir).status).to.equal(0);
      expect(mountsAt(dir)).to.deep.equal([]);
      await eventually(() => boundTo(sif).length === 0, 3000, 'the loop device to go');
    });
  });

  describe('mount: partitions and writing', () => {
    it('--id N mounts the partition with that descriptor id (offset from the SIF bytes)', async () => {
      const sif = copyOf('sif-data.sif');
      const dir = target('cli-id');
      // Our writer numbers objects from 1 in table order: id 3 is slot 2, the ext3 "scratch".
      const r = imgmount('mount', '--driver', 'kernel', '--id', '3', '--json', sif, dir);
      expect(r.status, r.stderr).to.equal(0);
      const out = JSON.parse(r.stdout) as { fstype: string; loopDevice: string };
      expect(out.fstype).to.equal('ext3');
      expect(mountsAt(dir).map((m) => [m.fstype, m.source])).to.deep.equal([['ext3', out.loopDevice]]);
      expect(Number(sysfs(out.loopDevice, 'loop/offset'))).to.equal(sifSlotOffset(sif, 2));
      expect(imgmount('umount', dir).status).to.equal(0);
      const missing = imgmount('mount', '--id', '9', sif, dir);
      expect(missing.status).to.equal(1);
      expect(mountsAt(dir)).to.deep.equal([]);
    });

    it('--writable mounts an ext3 image read-write (fuse2fs by default, the kernel with --trusted): writes land in the image', async () => {
      const img = copyOf('ext3.img');
      const dir = target('cli-writable');
      for (const [how, args, fstype] of [
        ['fuse2fs', [], 'fuse.ext4'],
        ['kernel', ['--trusted'], 'ext3'],
      ] as const) {
        const r = imgmount('mount', '--writable', ...args, img, dir);
        expect(r.status, r.stderr).to.equal(0);
        expect(r.stdout).to.match(/, read-write, /);
        const m = mountsAt(dir);
        expect(m.map((e) => e.fstype)).to.deep.equal([fstype]);
        expect(m[0]!.mountOptions).to.include('rw').and.include.members(['nosuid', 'nodev']);
        fs.writeFileSync(path.join(dir, `written-by-${how}.txt`), `${how}\n`);
        expect(imgmount('umount', dir).status).to.equal(0);
        expect(mountsAt(dir)).to.deep.equal([]);
        await eventually(() => boundTo(img).length === 0, 3000, 'the loop device to go');
        expect(debugfsCat(img, `/written-by-${how}.txt`)).to.equal(`${how}\n`);
      }
    });

    it('--overlay: an ext3 overlay image as upper layer with --writable (writes land in its upper/), as a lower layer without', async () => {
      const sif = copyOf('sif-basic.sif');
      const overlay = copyOf('ext3-empty.img');
      const dir = target('cli-overlay');
      const rw = imgmount('mount', '--writable', '--kernel-extfs', '--overlay', overlay, '--json', sif, dir);
      expect(rw.status, rw.stderr).to.equal(0);
      expect(JSON.parse(rw.stdout).root).to.deep.equal({ path: dir, readonly: false });
      expect(mountsAt(dir).map((m) => m.fstype)).to.deep.equal(['overlay']);
      expect(fs.readFileSync(path.join(dir, 'etc/hello.txt'), 'utf8')).to.equal(HELLO);
      fs.writeFileSync(path.join(dir, 'etc/from-overlay.txt'), 'kept in the overlay image\n');
      expect(imgmount('umount', dir).status).to.equal(0);
      expect(mountsAt(dir)).to.deep.equal([]);
      await eventually(() => boundTo(overlay).length === 0 && boundTo(sif).length === 0, 3000, 'the loop devices to go');
      expect(debugfsCat(overlay, '/upper/etc/from-overlay.txt')).to.equal('kept in the overlay image\n');

      const ro = imgmount('mount', '--kernel-extfs', '--overlay', overlay, '--json', sif, dir);
      expect(ro.status, ro.stderr).to.equal(0);
      expect(JSON.parse(ro.stdout).root).to.deep.equal({ path: dir, readonly: true });
      expect(fs.readFileSync(path.join(dir, 'etc/from-overlay.txt'), 'utf8')).to.equal('kept in the overlay image\n');
      expect(fs.readFileSync(path.join(dir, 'etc/hello.txt'), 'utf8')).to.equal(HELLO);
      expect(() => fs.writeFileSync(path.join(dir, 'etc/nope.txt'), 'x')).to.throw(/EROFS/);
      expect(imgmount('umount', dir).status).to.equal(0);
      expect(mountsAt(dir)).to.deep.equal([]);
      await eventually(() => boundTo(overlay).length === 0 && boundTo(sif).length === 0, 3000, 'the loop devices to go');
    });

    it('--key-file: a gocryptfs SIF mounts with the key read from the file; a wrong key file is refused, leaving nothing', async () => {
      const g = await gocryptfsImage(path.join(testTmp, 'cli-gocryptfs'));
      const dir = target('cli-keyfile');
      const keyFile = path.join(testTmp, 'cli-gocryptfs.key');
      fs.writeFileSync(keyFile, 'not the key\n', { mode: 0o600 });
      const wrong = imgmount('mount', '--key-file', keyFile, g.sif, dir);
      expect(wrong.status).to.equal(1);
      expect(wrong.stderr).to.match(/^imgmount: gocryptfs rejected the key /);
      expect(mountsAt(dir)).to.deep.equal([]);
      fs.writeFileSync(keyFile, `${g.key}\n`, { mode: 0o600 }); // the trailing newline is not part of the key
      const r = imgmount('mount', '--key-file', keyFile, g.sif, dir);
      expect(r.status, r.stderr).to.equal(0);
      // The outer squashfs, gocryptfs decrypting it, the inner squashfs.
      expect(r.stdout).to.match(/fuse driver served by squashfuse\S*\[\d+\], gocryptfs\[\d+\], squashfuse\S*\[\d+\]\n$/);
      expect(fs.readFileSync(path.join(dir, 'etc/hello.txt'), 'utf8')).to.equal(HELLO);
      expect(imgmount('umount', dir).status).to.equal(0);
      expect(mountsAt(dir)).to.deep.equal([]);
    });
  });

  describe('mount: namespaces', () => {
    it('--mntns PID mounts into that process\'s mount namespace: there, not here', async () => {
      const sif = copyOf('sif-basic.sif');
      const holder = await startNamespaceHolder(['-m', '--propagation', 'private']);
      const dir = mountDir('cli-mntns');
      try {
        const r = imgmount('mount', '--driver', 'kernel', '--mntns', String(holder.pid), sif, dir);
        expect(r.status, r.stderr).to.equal(0);
        const there = mountsAt(dir, holder.pid!);
        expect(there.map((m) => m.fstype)).to.deep.equal(['squashfs']);
        expect(there[0]!.mountOptions).to.include.members(['ro', 'nosuid', 'nodev']);
        expect(mountsAt(dir)).to.deep.equal([]);
        expect(fs.readFileSync(`/proc/${holder.pid}/root${dir}/etc/hello.txt`, 'utf8')).to.equal(HELLO);
        // Released from here by its record in that namespace (the CLI's umount --mntns).
        const u = imgmount('umount', '--mntns', String(holder.pid), dir);
        expect(u.status, u.stderr).to.equal(0);
        expect(mountsAt(dir, holder.pid!)).to.deep.equal([]);
      } finally {
        await stopHolder(holder);
      }
      await eventually(() => boundTo(sif).length === 0, 3000, 'the loop device to autoclear');
    });

    it('umount --mntns PID TARGET...: releases each there, names one that is not mounted and exits 1', async () => {
      const sif = copyOf('sif-basic.sif');
      const holder = await startNamespaceHolder(['-m', '--propagation', 'private']);
      const a = mountDir('cli-umount-a');
      const b = mountDir('cli-umount-b');
      const never = mountDir('cli-umount-never');
      try {
        for (const dir of [a, b]) {
          const r = imgmount('mount', '--driver', 'kernel', '--mntns', String(holder.pid), sif, dir);
          expect(r.status, r.stderr).to.equal(0);
          expect(mountsAt(dir, holder.pid!).map((m) => m.fstype)).to.deep.equal(['squashfs']);
        }
        const u = imgmount('umount', '--mntns', String(holder.pid), a, never, b);
        expect(u.status).to.equal(1);
        expect(u.stderr).to.match(new RegExp(`^imgmount: [^\\n]*${never}[^\\n]*\\n$`));
        expect(mountsAt(a, holder.pid!)).to.deep.equal([]);
        expect(mountsAt(b, holder.pid!)).to.deep.equal([]);
        // Not in this namespace: nothing of ours here to release.
        expect(imgmount('umount', a).status).to.equal(1);
      } finally {
        await stopHolder(holder);
      }
      await eventually(() => boundTo(sif).length === 0, 3000, 'the loop devices to autoclear');
    });

    it('--userns PID --mntns PID mounts into a rootless container (its user namespace, then its mount namespace)', async function () {
      requireUserNamespaces(this);
      const sif = copyOf('sif-basic.sif');
      const holder = await startNamespaceHolder(['-U', '-r', '-m', '--propagation', 'private']);
      const dir = mountDir('cli-userns-mntns');
      try {
        expect(nsId(holder.pid!, 'user')).to.not.equal(nsId('self', 'user'));
        const r = imgmount('mount', '--driver', 'kernel', '--userns', String(holder.pid), '--mntns', String(holder.pid), sif, dir);
        expect(r.status, r.stderr).to.equal(0);
        expect(mountsAt(dir, holder.pid!).map((m) => m.fstype)).to.deep.equal(['squashfs']);
        expect(mountsAt(dir)).to.deep.equal([]);
        expect(fs.readFileSync(`/proc/${holder.pid}/root${dir}/etc/hello.txt`, 'utf8')).to.equal(HELLO);
        const u = imgmount('umount', '--mntns', String(holder.pid), dir);
        expect(u.status, u.stderr).to.equal(0);
        expect(mountsAt(dir, holder.pid!)).to.deep.equal([]);
      } finally {
        await stopHolder(holder);
      }
      await eventually(() => boundTo(sif).length === 0, 3000, 'the loop device to autoclear');
    });

    it('--userns PID runs the FUSE helper in that user namespace (run from a mount namespace it owns)', async function () {
      requireUserNamespaces(this);
      const img = copyOf('sq-gzip.sqfs');
      const holder = await startNamespaceHolder(['-U', '-r', '-m', '--propagation', 'private']);
      const pid = holder.pid!;
      const dir = mountDir('cli-userns');
      let helper = 0;
      try {
        const r = imgmountInMntns(pid, 'mount', '--driver', 'fuse', '--userns', String(pid), '--json', img, dir);
        expect(r.status, r.stderr).to.equal(0);
        helper = (JSON.parse(r.stdout) as { mounts: Array<{ helpers: Array<{ pid: number }> }> }).mounts[0]!.helpers[0]!.pid;
        expect(nsId(helper, 'user')).to.equal(nsId(pid, 'user'));
        expect(nsId(helper, 'user')).to.not.equal(nsId('self', 'user'));
        const there = mountsAt(dir, pid);
        expect(there.map((m) => m.fstype)).to.deep.equal(['fuse.squashfuse_ll']);
        expect(there[0]!.mountOptions).to.include.members(['ro', 'nosuid', 'nodev']);
        // Made by the container's root: user_id 0 there. A FUSE mount owned by a user namespace
        // serves only processes inside it, so it is read from there.
        expect(there[0]!.superOptions).to.include('user_id=0');
        const read = execFileSync('nsenter', ['-t', String(pid), '-U', '-m', '--preserve-credentials', 'cat', path.join(dir, 'etc/hello.txt')], { encoding: 'utf8' });
        expect(read).to.equal(HELLO);
        expect(mountsAt(dir)).to.deep.equal([]);
        const u = imgmountInMntns(pid, 'umount', dir);
        expect(u.status, u.stderr).to.equal(0);
        expect(mountsAt(dir, pid)).to.deep.equal([]);
        await eventually(() => {
          try {
            return fs.readFileSync(`/proc/${helper}/stat`, 'utf8').split(') ')[1]![0] === 'Z';
          } catch {
            return true;
          }
        }, 5000, 'the helper to exit');
      } finally {
        await stopHolder(holder);
      }
    });
  });

  describe('loop', () => {
    const attached: string[] = [];
    afterEach(() => {
      // A failed assertion must not leave a (non-autoclear) device behind.
      for (const d of attached.splice(0)) spawnSync(process.execPath, [bin, 'loop', 'detach', d]);
    });

    it('attach --shared twice binds one device and prints it both times', async () => {
      const img = copyOf('sq-gzip.sqfs');
      const first = imgmount('loop', 'attach', '--shared', '--json', img);
      expect(first.status, first.stderr).to.equal(0);
      const a = JSON.parse(first.stdout) as { path: string; method: string };
      attached.push(a.path);
      const second = imgmount('loop', 'attach', '--shared', '--json', img);
      expect(second.status, second.stderr).to.equal(0);
      const b = JSON.parse(second.stdout) as { path: string; method: string };
      expect(b.path).to.equal(a.path);
      expect([a.method, b.method]).to.deep.equal(['configure', 'shared']);
      expect(boundTo(img)).to.deep.equal([path.basename(a.path)]);
      // Without --shared a second device is bound.
      const third = imgmount('loop', 'attach', img);
      expect(third.status, third.stderr).to.equal(0);
      attached.push(third.stdout.trim());
      expect(boundTo(img).sort()).to.deep.equal([path.basename(a.path), path.basename(third.stdout.trim())].sort());
      for (const d of attached.splice(0)) expect(imgmount('loop', 'detach', d).status).to.equal(0);
      expect(boundTo(img)).to.deep.equal([]);
    });

    it('attach --writable binds read-write: bytes written to the device land in the image', () => {
      const img = copyOf('ext3.img');
      const r = imgmount('loop', 'attach', '--writable', img);
      expect(r.status, r.stderr).to.equal(0);
      const dev = r.stdout.trim();
      attached.push(dev);
      expect(sysfs(dev, 'ro')).to.equal('0');
      const size = fs.statSync(img).size;
      const marker = Buffer.from('written through the loop device');
      const fd = fs.openSync(dev, 'r+');
      try {
        fs.writeSync(fd, marker, 0, marker.length, size - 4096);
        fs.fsyncSync(fd);
      } finally {
        fs.closeSync(fd);
      }
      expect(imgmount('loop', 'detach', attached.pop()!).status).to.equal(0);
      const back = Buffer.alloc(marker.length);
      const ifd = fs.openSync(img, 'r');
      try {
        fs.readSync(ifd, back, 0, back.length, size - 4096);
      } finally {
        fs.closeSync(ifd);
      }
      expect(back.toString()).to.equal(marker.toString());
      // The default is read-only.
      const ro = imgmount('loop', 'attach', img);
      attached.push(ro.stdout.trim());
      expect(sysfs(ro.stdout.trim(), 'ro')).to.equal('1');
    });

    it('attach --offset B --size B binds exactly that byte range', () => {
      const img = copyOf('hdr-lf.sqfs');
      const r = imgmount('loop', 'attach', '--offset', '31', '--size', '4096', img);
      expect(r.status, r.stderr).to.equal(0);
      const dev = r.stdout.trim();
      attached.push(dev);
      expect([sysfs(dev, 'loop/offset'), sysfs(dev, 'loop/sizelimit'), sysfs(dev, 'size')]).to.deep.equal(['31', '4096', String(4096 / 512)]);
      const head = Buffer.alloc(4);
      const fd = fs.openSync(dev, 'r');
      try {
        fs.readSync(fd, head, 0, 4, 0);
      } finally {
        fs.closeSync(fd);
      }
      expect(head.toString('latin1')).to.equal('hsqs'); // the squashfs behind the 31-byte header
    });

    it('list --all shows unbound devices too (one made for the test with LOOP_CTL_ADD)', () => {
      let n = 240;
      while (fs.existsSync(`/sys/block/loop${n}`)) n++;
      const ctl = (op: number): void => {
        execFileSync('python3', ['-c', `import fcntl, os; fcntl.ioctl(os.open('/dev/loop-control', os.O_RDWR), ${op}, ${n})`]);
      };
      ctl(0x4c80); // LOOP_CTL_ADD
      try {
        expect(fs.existsSync(`/sys/block/loop${n}/loop`)).to.equal(false); // exists, not bound
        const all = JSON.parse(imgmount('loop', 'list', '--all', '--json').stdout) as Array<{ path: string; bound: boolean }>;
        expect(all.find((d) => d.path === `/dev/loop${n}`)).to.deep.include({ bound: false });
        const bound = JSON.parse(imgmount('loop', 'list', '--json').stdout) as Array<{ path: string; bound: boolean }>;
        expect(bound.map((d) => d.path)).to.not.include(`/dev/loop${n}`);
        expect(bound.every((d) => d.bound)).to.equal(true);
        const table = imgmount('loop', 'list', '--all').stdout;
        expect(table).to.match(new RegExp(`^/dev/loop${n}\\s+0\\s+0\\s+0\\s+0\\s+\\(unbound\\)$`, 'm'));
        expect(imgmount('loop', 'list').stdout).to.not.match(new RegExp(`^/dev/loop${n}\\s`, 'm'));
      } finally {
        ctl(0x4c81); // LOOP_CTL_REMOVE
      }
      expect(fs.existsSync(`/sys/block/loop${n}`)).to.equal(false);
    });
  });
});
