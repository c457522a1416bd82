// Hostile images, overlays and paths against a root daemon (../shared/docs/security-model.md),
// each class tried as an attacker would, with real mounts in the suite's private namespace:
//  1. symlinks inside images: overlay upper/work and data-partition mount points that point at
//     the host (absolute and ../../ links), with each driver, both mount APIs and both resolvers;
//  2. a target whose parent is swapped for a symlink thousands of times while mounts run;
//  3. system targets, given directly, through a symlink and as a bind mount of /etc;
//  4. a container whose filesystem holds fake helper programs;
//  9. nosuid and nodev, proven by a real setuid binary and a device node on every kind of top.
// (Forged state and overrides: trust.test.ts; acting for a user: as-user.test.ts; header
// bounds: the SIF tests.)
import { expect } from 'chai';
import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Worker } from 'node:worker_threads';
import { init, type Image } from '../../../lib';
import { bindMount, findMounts, mount, mountInNamespace, mountPartition, readMountInfo, umount, MS_BIND } from '../../../lib/mount';
import { SYSTEM_TARGETS } from '../../../lib/path/system-targets';
import { mountImage, root } from '../../../lib/root';
import { restoreEnv, setEnv } from '../../support/forgery';
import { testTmp } from '../../support/hooks';
import { DATA_LINKS, hostileImages, listing, privilegeImages, removeOpenDir, type HostileImages } from '../../support/hostile';
import { mountDir, testImages } from '../../support/images';
import { requireKernel, startNamespaceHolder, stopHolder } from '../../support/kernel';
import { helperProcesses, mountPoints, registerMountPoint } from '../../support/leaks';
import { repoRoot } from '../../support/paths';

const bin = path.join(repoRoot, 'bin', 'imgmount.js');

async function errorOf(p: Promise<unknown>): Promise<NodeJS.ErrnoException & { details?: Record<string, unknown> }> {
  const e = await p.then(
    () => null,
    (err: unknown) => err,
  );
  expect(e, 'expected a rejection').to.be.instanceOf(Error);
  return e as NodeJS.ErrnoException;
}

/** The parent pid of `pid` (null once it is gone). */
function parentOf(pid: number): number | null {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
  } catch {
    return null;
  }
}

/** Mounts at or below `dir`. */
function mountsUnder(dir: string): string[] {
  return mountPoints().filter((m) => m === dir || m.startsWith(dir + '/'));
}

function copy(file: string): string {
  const to = path.join(testTmp, `${path.basename(file)}-${Math.random().toString(36).slice(2, 8)}`);
  fs.copyFileSync(file, to);
  return to;
}

describe('kernel: hostile images, overlays and paths cannot reach the host', function () {
  let h: HostileImages;
  let hostBefore: string[];
  let host2Before: string[];

  before(async function () {
    requireKernel(this);
    h = await hostileImages();
    hostBefore = listing(h.host);
    host2Before = listing(h.host2);
  });

  afterEach(() => {
    restoreEnv();
    // After every attempt: nothing mounted on the host directories, nothing written there.
    expect(mountsUnder(h.host)).to.deep.equal([]);
    expect(mountsUnder(h.host2)).to.deep.equal([]);
    expect(listing(h.host)).to.deep.equal(hostBefore);
    expect(listing(h.host2)).to.deep.equal(host2Before);
  });

  describe('overlays whose upper/ and work/ are symlinks to the host', () => {
    for (const driver of ['kernel', 'fuse'] as const) {
      for (const kind of ['absolute', 'relative'] as const) {
        it(`an ext3 overlay image (${kind} links, ${driver} driver), writable: ERR_UNSAFE_PATH, nothing written or mounted`, async () => {
          await using base = await init(h.base);
          const t = registerMountPoint(mountDir('hostile-ov-rw'));
          const err = await errorOf(root(base, t, { driver, overlays: [{ path: copy(h.overlayExt3[kind]), writable: true }] }));
          expect(err.code).to.equal('ERR_UNSAFE_PATH');
          expect(err.message).to.match(/upper.*symbolic link/);
          expect(mountsUnder(t)).to.deep.equal([]);
        });

        it(`an ext3 overlay image (${kind} links, ${driver} driver), read-only: ERR_UNSAFE_PATH, the host's files never shown`, async () => {
          await using base = await init(h.base);
          const t = registerMountPoint(mountDir('hostile-ov-ro'));
          const err = await errorOf(root(base, t, { driver, overlays: [h.overlayExt3[kind]] }));
          expect(err.code).to.equal('ERR_UNSAFE_PATH');
          expect(mountsUnder(t)).to.deep.equal([]);
          expect(fs.existsSync(path.join(t, 'host-file.txt'))).to.equal(false);
        });
      }
    }

    it('an overlay directory, writable and read-only: ERR_UNSAFE_PATH', async () => {
      await using base = await init(h.base);
      for (const writable of [true, false]) {
        const t = registerMountPoint(mountDir('hostile-ovdir'));
        const err = await errorOf(root(base, t, { overlays: [{ path: h.overlayDir, writable }] }));
        expect(err.code, `writable: ${writable}`).to.equal('ERR_UNSAFE_PATH');
        expect(mountsUnder(t)).to.deep.equal([]);
      }
    });

    for (const driver of ['kernel', 'fuse'] as const) {
      it(`a SIF whose own overlay partition holds them, opened writable (${driver} driver): ERR_UNSAFE_PATH`, async () => {
        await using img = await init(copy(h.sifOverlay), true);
        const t = registerMountPoint(mountDir('hostile-sif-ov'));
        const err = await errorOf(root(img, t, { driver, writable: true }));
        expect(err.code).to.equal('ERR_UNSAFE_PATH');
        expect(mountsUnder(t)).to.deep.equal([]);
      });
    }
  });

  describe('data partitions at symlinked mount points inside the root', () => {
    const combos: Array<[driver: 'kernel' | 'fuse', api: 'new' | 'legacy', resolver: 'openat2' | 'walk']> = [];
    for (const driver of ['kernel', 'fuse'] as const) for (const api of ['new', 'legacy'] as const) for (const resolver of ['openat2', 'walk'] as const) combos.push([driver, api, resolver]);

    for (const [driver, api, resolver] of combos) {
      it(`${driver} driver, ${api} mount API, ${resolver} resolver: links stay inside the image, or the mount is refused`, async () => {
        setEnv('IMGMOUNT_MOUNT_API', api);
        setEnv('IMGMOUNT_RESOLVE', resolver);
        await using img: Image = await init(h.dataSif);
        // Leading to the host directory, absolutely or by climbing: not in the image, refused.
        for (const link of [DATA_LINKS.absHost, DATA_LINKS.relHost]) {
          const t = registerMountPoint(mountDir('hostile-data'));
          const err = await errorOf(root(img, t, { driver, data: [{ partition: 'data', path: `/${link}` }] }));
          expect(err.code, link).to.equal('ERR_INVALID_ARG_VALUE');
          expect(mountsUnder(t), link).to.deep.equal([]);
        }
        // Leading to paths the image has: mounted there, inside the root.
        const t = registerMountPoint(mountDir('hostile-data-in'));
        await using r = await root(img, t, {
          driver,
          data: [
            { partition: 'data', path: `/${DATA_LINKS.absPresent}` },
            { partition: 'data', path: `/${DATA_LINKS.absEtc}` },
          ],
        });
        const inside = path.join(t, h.host);
        expect(mountsUnder(t).sort()).to.deep.equal([t, inside, path.join(t, 'etc')].sort());
        expect(fs.readFileSync(path.join(inside, 'data-partition.txt'), 'utf8')).to.equal('from the data partition\n');
        expect(fs.existsSync('/etc/data-partition.txt')).to.equal(false);
        expect(r.mounts.map((m) => m.target)).to.include.members([inside, path.join(t, 'etc')]);
      });
    }
  });

  describe('a target whose parent is swapped for a symlink while mounts run', () => {
    it('every mount lands in the intended directory or fails; none ever lands elsewhere', async function () {
      this.timeout(120_000);
      // A directory others may write (where the attacker lives), holding parent/mnt (real) and
      // link -> elsewhere (which has mnt/ too); a thread swaps them as fast as it can.
      const race = path.join(testTmp, 'race');
      const elsewhere = path.join(testTmp, 'elsewhere');
      fs.mkdirSync(path.join(race, 'parent', 'mnt'), { recursive: true });
      fs.mkdirSync(path.join(elsewhere, 'mnt'), { recursive: true });
      fs.chmodSync(race, 0o777);
      fs.symlinkSync(elsewhere, path.join(race, 'link'));
      registerMountPoint(path.join(race, 'parent', 'mnt'));
      registerMountPoint(path.join(elsewhere, 'mnt'));
      const shared = new Int32Array(new SharedArrayBuffer(8));
      const worker = new Worker(
        `const { workerData } = require('node:worker_threads');
         const fs = require('node:fs');
         const [race, flags] = [workerData.race, workerData.flags];
         const p = (n) => race + '/' + n;
         while (Atomics.load(flags, 0) === 0) {
           try {
             fs.renameSync(p('parent'), p('parked')); fs.renameSync(p('link'), p('parent')); Atomics.add(flags, 1, 1);
             fs.renameSync(p('parent'), p('link')); fs.renameSync(p('parked'), p('parent')); Atomics.add(flags, 1, 1);
           } catch {}
         }`,
        { eval: true, workerData: { race, flags: shared } },
      );
      const src = testImages().squashfs;
      let landed = 0;
      let refused = 0;
      const unexpected: string[] = [];
      const intended = new Set<string>();
      try {
        for (let i = 0; i < 1500; i++) {
          try {
            const m = await mountPartition(src, path.join(race, 'parent', 'mnt'), { fstype: 'squashfs' });
            try {
              // Where it is: the real directory, wherever the swaps put it at this instant.
              intended.add(m.target);
              expect(findMounts(await readMountInfo(), { mountPoint: path.join(elsewhere, 'mnt') })).to.deep.equal([]);
              landed++;
            } finally {
              await m.unmount();
            }
          } catch (err) {
            if ((err as Error).name === 'AssertionError') throw err;
            // A refusal must be one of the two the race allows, never any error at all:
            // the parent was away (ENOENT on "parent", or on "parent/mnt" from the one-hop open
            // of the whole path), or it was the attacker's symlink.
            const e = err as NodeJS.ErrnoException;
            const away = e.code === 'ENOENT' && /openat2? '(.*\/race\/)?parent(\/mnt)?'$/.test(e.message);
            const link = e.code === 'ERR_UNSAFE_PATH' && e.message.includes(`${race}/parent is a symbolic link that someone other than root could have put there`);
            if (!away && !link) unexpected.push(`${e.code}: ${e.message}`);
            refused++;
          }
        }
      } finally {
        Atomics.store(shared, 0, 1);
        await worker.terminate();
      }
      console.log(`      (${Atomics.load(shared, 1)} swaps; ${landed} mounts landed, ${refused} refused)`);
      expect(Atomics.load(shared, 1), 'swaps made').to.be.greaterThan(1000);
      expect(landed, 'mounts that landed').to.be.greaterThan(0);
      expect(refused, 'mounts refused while the parent was a symlink or away').to.be.greaterThan(0);
      expect(unexpected, 'refusals for another reason').to.deep.equal([]);
      for (const t of intended) expect(t).to.match(new RegExp(`^${race}/(parent|parked)/mnt$`));
      expect(mountsUnder(elsewhere)).to.deep.equal([]);
      expect(mountsUnder(race)).to.deep.equal([]);
    });
  });

  describe('unmounting takes the mount imgmount made, not whatever a name leads to now', () => {
    it('here: a mount point renamed and replaced by another mount, then released: ours goes, theirs stays', async () => {
      // The rename happens where the directory is no mount point (a namespace made before the
      // mount): as a user with a mount namespace of their own could do.
      const other = await startNamespaceHolder(['-m', '--propagation', 'private']);
      const a = registerMountPoint(mountDir('ident-a'));
      const b = registerMountPoint(a + '-renamed');
      const m = await mountPartition(testImages().squashfs, a, { fstype: 'squashfs' });
      try {
        execFileSync('nsenter', ['-t', String(other.pid), '-m', '--', 'mv', a, b]);
        fs.mkdirSync(a);
        await mount('tmpfs', a, 'tmpfs', 0, 'size=1m');
        expect(findMounts(await readMountInfo(), { mountPoint: b })[0]?.fstype).to.equal('squashfs');
        await m.unmount();
        expect(mountsUnder(b)).to.deep.equal([]);
        expect(findMounts(await readMountInfo(), { mountPoint: a }).map((e) => e.fstype)).to.deep.equal(['tmpfs']);
      } finally {
        await umount(a).catch(() => undefined);
        await stopHolder(other);
      }
    });

    it('in another namespace: a mount stacked on ours there is left alone (ERR_NOT_MOUNTED), ours then goes', async () => {
      const holder = await startNamespaceHolder(['-m', '--propagation', 'private']);
      try {
        const t = mountDir('ident-ns');
        const m = await mountInNamespace({ pid: holder.pid! }, testImages().squashfs, t, { fstype: 'squashfs' });
        execFileSync('nsenter', ['-t', String(holder.pid), '-m', '--', 'mount', '-t', 'tmpfs', '-o', 'size=1m', 'theirs', t]);
        const err = await errorOf(m.unmount());
        expect(err.code).to.equal('ERR_NOT_MOUNTED');
        expect(err.message).to.match(/no longer holds the mount imgmount made/);
        const there = await readMountInfo(holder.pid!);
        expect(findMounts(there, { mountPoint: t }).map((e) => e.fstype)).to.deep.equal(['squashfs', 'tmpfs']);
        execFileSync('nsenter', ['-t', String(holder.pid), '-m', '--', 'umount', t]);
        await m.unmount();
        expect(findMounts(await readMountInfo(holder.pid!), { mountPoint: t })).to.deep.equal([]);
      } finally {
        await stopHolder(holder);
      }
    });
  });

  describe('system directories are never mount targets', () => {
    const targets = [...SYSTEM_TARGETS, '/proc/sys', '/sys/kernel', '/dev/shm', '/proc/self'].filter((t) => fs.existsSync(t));

    it(`mountImage refuses ${targets.join(' ')} with ERR_UNSAFE_TARGET, mounting nothing there`, async () => {
      await using img = await init(testImages().squashfs);
      const before = mountPoints();
      for (const t of targets) {
        const err = await errorOf(mountImage(img, t, { driver: 'kernel' }));
        expect(err.code, t).to.equal('ERR_UNSAFE_TARGET');
      }
      expect(mountPoints()).to.deep.equal(before);
    });

    it('every entry point refuses them: root, mountPartition, bindMount, mount(), umount()', async () => {
      await using img = await init(testImages().squashfs);
      const before = mountPoints();
      for (const t of ['/proc', '/etc']) {
        expect((await errorOf(root(img, t))).code).to.equal('ERR_UNSAFE_TARGET');
        expect((await errorOf(root(img, t, { writableTmpfs: true }))).code).to.equal('ERR_UNSAFE_TARGET');
        expect((await errorOf(mountPartition(testImages().squashfs, t, { fstype: 'squashfs' }))).code).to.equal('ERR_UNSAFE_TARGET');
        expect((await errorOf(bindMount(testImages().tree, t))).code).to.equal('ERR_UNSAFE_TARGET');
        expect((await errorOf(mount('tmpfs', t, 'tmpfs', 0))).code).to.equal('ERR_UNSAFE_TARGET');
        expect((await errorOf(mount(testImages().tree, t, null, MS_BIND))).code).to.equal('ERR_UNSAFE_TARGET');
      }
      expect((await errorOf(umount('/proc'))).code).to.equal('ERR_UNSAFE_TARGET');
      expect((await errorOf(umount('/'))).code).to.equal('ERR_UNSAFE_TARGET');
      expect(mountPoints()).to.deep.equal(before);
      expect(fs.existsSync('/proc/self/status')).to.equal(true);
    });

    it('through a symlink, and as a bind mount of /etc somewhere else (identity, not name)', async () => {
      await using img = await init(testImages().squashfs);
      const link = path.join(testTmp, 'etc-link');
      fs.symlinkSync('/etc', link);
      const viaLink = await errorOf(mountImage(img, link, { driver: 'kernel' }));
      expect(viaLink.code).to.equal('ERR_UNSAFE_TARGET');
      expect(viaLink.message).to.include('(/etc)');
      const bound = registerMountPoint(mountDir('etc-bind'));
      await bindMount('/etc', bound);
      try {
        const err = await errorOf(root(img, bound));
        expect(err.code).to.equal('ERR_UNSAFE_TARGET');
        expect(err.message).to.match(/it is \/etc \(reached as /);
      } finally {
        await umount(bound);
      }
    });

    it('imgmount mount IMAGE /proc (and /) exits 1 naming the rule; umount /proc too', () => {
      for (const t of ['/proc', '/']) {
        const r = spawnSync(process.execPath, [bin, 'mount', testImages().squashfs, t], { encoding: 'utf8' });
        expect(r.status, r.stderr).to.equal(1);
        expect(r.stderr).to.match(/refusing to use .* as a mount point: it is /);
      }
      const u = spawnSync(process.execPath, [bin, 'umount', '/proc'], { encoding: 'utf8' });
      expect(u.status).to.equal(1);
      expect(u.stderr).to.match(/refusing to unmount \/proc/);
      expect(fs.existsSync('/proc/self/status')).to.equal(true);
    });
  });

  describe("a container's filesystem with fake helper programs", () => {
    it('FUSE mounts into its namespace are served by our programs; the fakes never run', async () => {
      const holder = await startNamespaceHolder(['-m', '--propagation', 'private']);
      const marker = path.join(testTmp, 'fake-helper-ran');
      const fake = path.join(testTmp, 'fake-helper.sh');
      fs.writeFileSync(fake, `#!/bin/sh\necho "$0 $*" >> ${marker}\nexit 1\n`, { mode: 0o755 });
      try {
        // In the container's mount namespace only: its squashfuse_ll, fuse2fs and setsid are fakes.
        for (const prog of ['/usr/bin/squashfuse_ll', '/usr/bin/squashfuse', '/usr/bin/fuse2fs', '/usr/bin/setsid'])
          execFileSync('nsenter', ['-t', String(holder.pid), '-m', '--', 'mount', '--bind', fake, prog]);
        expect(execFileSync('nsenter', ['-t', String(holder.pid), '-m', '--', 'cat', '/usr/bin/squashfuse_ll'], { encoding: 'utf8' })).to.include('fake');
        const before = helperProcesses();
        await using img = await init(testImages().sif);
        const t = mountDir('fake-helpers');
        await using r = await root(img, t, { driver: 'fuse', namespace: { pid: holder.pid! } });
        const there = `/proc/${holder.pid}/root${t}`;
        expect(fs.readFileSync(path.join(there, 'etc/hello.txt'), 'utf8')).to.equal('hello from imgmount\n');
        const data = mountDir('fake-helpers-data');
        await using d = await mountImage(img, data, { driver: 'fuse', partition: img.getDataPartitions()[0]!, namespace: { pid: holder.pid! } });
        expect(fs.readFileSync(path.join(`/proc/${holder.pid}/root${data}`, 'etc/hello.txt'), 'utf8')).to.equal('hello from imgmount\n');
        // New helper processes that are our children: other processes on the machine run helpers too.
        const ours = helperProcesses().filter((p) => !before.includes(p) && parentOf(Number(p.split(' ')[0])) === process.pid);
        expect(ours.map((p) => p.split(' ')[1]).sort()).to.deep.equal(['fuse2fs', 'squashfuse_ll']);
        // The helpers the handles name are those, our system programs, running in our mount namespace.
        const named = [...r.mounts.flatMap((m) => m.helpers), ...d.helpers];
        expect(named.map((h) => h.program)).to.deep.equal(['squashfuse_ll', 'fuse2fs']);
        expect(named.map((h) => `${h.pid} ${h.program}`).sort()).to.deep.equal([...ours].sort());
        for (const h of named) {
          expect(fs.readlinkSync(`/proc/${h.pid}/exe`)).to.equal(`/usr/bin/${h.program}`);
          expect(fs.readlinkSync(`/proc/${h.pid}/ns/mnt`)).to.equal(fs.readlinkSync('/proc/self/ns/mnt'));
        }
        expect(fs.existsSync(marker), 'a fake helper ran').to.equal(false);
      } finally {
        await stopHolder(holder);
      }
      expect(fs.existsSync(marker), 'a fake helper ran').to.equal(false);
    });
  });

  describe('nosuid and nodev on every top, proven by a setuid binary and a device node', () => {
    const asNobody = (file: string, ...args: string[]) =>
      spawnSync('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', file, ...args], { encoding: 'utf8' });
    const nodevRefused = (file: string): string => {
      try {
        fs.closeSync(fs.openSync(file, 'r'));
        return 'opened';
      } catch (err) {
        return (err as NodeJS.ErrnoException).code!;
      }
    };

    after(() => removeOpenDir());

    it('control: the image really holds a working setuid-root program and device node (allowed explicitly)', async () => {
      const p = privilegeImages();
      const t = registerMountPoint(fs.mkdtempSync(path.join(p.open, 'control-')));
      fs.chmodSync(t, 0o755);
      await using _m = await mountPartition(p.squashfs, t, { fstype: 'squashfs', nosuid: false, nodev: false });
      const r = asNobody(path.join(t, 'bin/suid-id'), '-u');
      expect(r.stdout.trim(), r.stderr).to.equal('0');
      expect(nodevRefused(path.join(t, 'dev/null-node'))).to.equal('opened');
    });

    const tops: Array<[string, (img: Image, t: string) => Promise<AsyncDisposable>]> = [
      ['kernel squashfs root', (img, t) => root(img, t, { driver: 'kernel' })],
      ['FUSE squashfs root (squashfuse_ll)', (img, t) => root(img, t, { driver: 'fuse' })],
      ['kernel overlay top (tmpfs upper)', (img, t) => root(img, t, { driver: 'kernel', writableTmpfs: true })],
      ['fuse-overlayfs top (tmpfs upper)', (img, t) => root(img, t, { driver: 'fuse', writableTmpfs: true })],
    ];
    for (const [name, mountIt] of tops) {
      it(`${name}: the setuid bit is ignored and the device cannot be opened`, async () => {
        const p = privilegeImages();
        await using img = await init(p.squashfs);
        const t = registerMountPoint(fs.mkdtempSync(path.join(p.open, 'top-')));
        fs.chmodSync(t, 0o755);
        await using _r = await mountIt(img, t);
        expect(fs.statSync(path.join(t, 'bin/suid-id')).mode & 0o4000).to.equal(0o4000);
        const r = asNobody(path.join(t, 'bin/suid-id'), '-u');
        expect(r.status, r.stderr).to.equal(0);
        expect(r.stdout.trim()).to.equal('65534');
        expect(nodevRefused(path.join(t, 'dev/null-node'))).to.equal('EACCES');
        expect(findMounts(await readMountInfo(), { mountPoint: t })[0]!.mountOptions).to.include.members(['nosuid', 'nodev']);
      });
    }
    for (const driver of ['kernel', 'fuse'] as const) {
      it(`ext3 by the ${driver} driver: the same`, async () => {
        const p = privilegeImages();
        await using img = await init(p.ext3);
        const t = registerMountPoint(fs.mkdtempSync(path.join(p.open, 'ext3-')));
        fs.chmodSync(t, 0o755);
        await using _m = await mountImage(img, t, { driver });
        const r = asNobody(path.join(t, 'bin/suid-id'), '-u');
        expect(r.stdout.trim(), r.stderr).to.equal('65534');
        expect(nodevRefused(path.join(t, 'dev/null-node'))).to.equal('EACCES');
      });
    }
  });
});
