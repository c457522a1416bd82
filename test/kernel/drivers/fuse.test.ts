// The FUSE driver on the real kernel with the real helpers: squashfuse_ll and squashfuse (SIF
// partition, bare image, image behind a launch header) with /dev/fuse fd passing, fuse2fs at an
// offset read-only and read-write, a gocryptfs round trip, fuse-overlayfs over a squashfuse
// lower, helpers inside a user namespace, early death, timeout, abort, the session state
// machine, release from another process, and the event-driven mountinfo wait.
import { expect } from 'chai';
import { spawnSync, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { AbortError, ImgmountError } from '../../../lib/errors';
import { init } from '../../../lib/image';
import type { Image } from '../../../lib/image/image';
import { kernelMountFunc } from '../../../lib/drivers/kernel';
import { findMountRecord } from '../../../lib/drivers/mount-record';
import { FuseDriver, fuseBinaries, releaseFuseMount, waitForMount, type FuseDriverOptions, type FuseMountParams } from '../../../lib/drivers/fuse';
import { filterHelperOutput } from '../../../lib/drivers/fuse/helper-process';
import { MS_NODEV, MS_NOSUID, MS_RDONLY, findMounts, mount, readMountInfo, umount, type MountInfoEntry } from '../../../lib/mount';
import { spawnInNamespaces } from '../../../lib/ns';
import { readOutput } from '../../../lib/util/child-exit';
import { cleanup } from '../../../lib/root/cleanup';
import { openFds } from '../../support/fds';
import { rejection, running } from '../../support/forgery';
import { unsquashfsFacts } from '../../support/fs-tools';
import { gocryptfsImage } from '../../support/gocryptfs-image';
import { testTmp } from '../../support/hooks';
import { mountDir, testImages } from '../../support/images';
import { distLib, eventually, requireKernel, requireUserNamespaces, startNamespaceHolder } from '../../support/kernel';
import { mountPoints, registerMountPoint } from '../../support/leaks';

const RO = MS_RDONLY | MS_NOSUID | MS_NODEV;
const HELLO = 'hello from imgmount\n';

/** Every helper pid any driver of this suite started. */
const started = new Map<number, string>();
/** Drivers of the running test, stopped (releasing what they hold) after it, pass or fail. */
const drivers: FuseDriver[] = [];

function liveHelpers(): string[] {
  return [...started].filter(([pid]) => running(pid)).map(([pid, p]) => `${p}[${pid}]`);
}

function target(name: string): string {
  return registerMountPoint(mountDir(`fuse-${name}`));
}

async function entryAt(t: string, pid: number | 'self' = 'self'): Promise<MountInfoEntry | undefined> {
  const found = findMounts(await readMountInfo(pid), { mountPoint: t });
  return found[found.length - 1];
}

function recordFiles(): string[] {
  try {
    return fs.readdirSync(path.join(process.env.IMGMOUNT_STATE_DIR!, 'mounts')).filter((n) => n.endsWith('.json'));
  } catch {
    return [];
  }
}

function sessionDirs(): string[] {
  try {
    return fs.readdirSync(path.join(process.env.IMGMOUNT_STATE_DIR!, 'sessions'));
  } catch {
    return [];
  }
}

async function driver(options: FuseDriverOptions = {}): Promise<FuseDriver> {
  const d = new FuseDriver({
    ...options,
    onHelperStart: (h) => {
      started.set(h.pid, h.program);
      options.onHelperStart?.(h);
    },
  });
  await d.start({ sessionPath: '', usernsFd: -1, fuseFd: -1 });
  drivers.push(d);
  return d;
}

function params(p: Partial<FuseMountParams> & Pick<FuseMountParams, 'source' | 'target' | 'filesystem'>): FuseMountParams {
  return { flags: RO, offset: 0, size: 0, fsOptions: [], ...p };
}

/** Nothing of a mount at `t` is left: no mount, no helper of this suite, no record, no session dir. */
async function expectClean(t: string): Promise<void> {
  expect(mountPoints(), 'mount left').to.not.include(t);
  await eventually(() => liveHelpers().length === 0, 3000, `helpers to exit (${liveHelpers().join(', ')})`);
  expect(recordFiles(), 'mount record left').to.deep.equal([]);
  expect(sessionDirs(), 'session directory left').to.deep.equal([]);
}

async function catInNamespace(pid: number, file: string): Promise<string> {
  // cat may be done already: its exit and output were kept since the spawn.
  const { code, stdout: out } = await readOutput(await spawnInNamespaces({ pid }, 'cat', [file]));
  expect(code, `cat ${file} in the namespaces of ${pid}`).to.equal(0);
  return out;
}

function fakeHelper(dir: string, name: string, body: string): string {
  fs.mkdirSync(dir, { recursive: true });
  const file = path.join(dir, name);
  fs.writeFileSync(file, `#!/bin/sh\n${body}\n`, { mode: 0o755 });
  return file;
}

describe('kernel: FUSE driver', function () {
  let stateBefore: string | undefined;
  let sif: Image;

  before(async function () {
    requireKernel(this);
    stateBefore = process.env.IMGMOUNT_STATE_DIR;
    process.env.IMGMOUNT_STATE_DIR = path.join(testTmp, 'fuse-state');
    sif = await init(testImages().sif);
  });

  after(async function () {
    await sif?.close();
    if (stateBefore === undefined) delete process.env.IMGMOUNT_STATE_DIR;
    else process.env.IMGMOUNT_STATE_DIR = stateBefore;
    // No helper this suite started may outlive it.
    await eventually(() => liveHelpers().length === 0, 3000, 'every helper of the FUSE suite to exit');
  });

  afterEach(async function () {
    const leftovers = liveHelpers();
    // Release what a failed test left, so that one failure does not cascade.
    for (const d of drivers.splice(0)) await d.stop('').catch(() => undefined);
    for (const [pid] of started) if (running(pid)) process.kill(pid, 'SIGKILL');
    expect(leftovers, 'helpers still running after the test').to.deep.equal([]);
  });

  it('finds the helpers, their fd-passing support, and advertises the features they give', async () => {
    const bins = await fuseBinaries();
    expect(bins.squashfuse).to.match(/\/squashfuse_ll$/);
    expect(bins.fuse2fs).to.match(/\/fuse2fs$/);
    expect(bins.gocryptfs).to.match(/\/gocryptfs$/);
    expect(bins.fuseOverlayfs).to.match(/\/fuse-overlayfs$/);
    // libfuse 3 and go-fuse take /dev/fd/N; Debian's fuse2fs is libfuse 2 and cannot.
    expect(bins.fdPassing[bins.squashfuse!]).to.equal(true);
    expect(bins.fdPassing[bins.gocryptfs!]).to.equal(true);
    expect(bins.fdPassing[bins.fuseOverlayfs!]).to.equal(true);
    expect(bins.fdPassing[bins.fuse2fs!]).to.equal(false);
    expect(await fuseBinaries()).to.equal(bins); // memoised
    const d = await driver();
    expect(d.name).to.equal('fuse');
    expect(d.features()).to.equal(1 | 2 | 4 | 8); // Squash | Ext3 | Gocrypt | Overlay, no FuseFeature
    const empty = path.join(testTmp, 'no-helpers');
    fs.mkdirSync(empty, { recursive: true });
    expect(new FuseDriver({ binaryPath: empty }).features()).to.equal(0);
    await d.stop('');
  });

  describe('squashfs', () => {
    const cases = [
      { what: 'the squashfs partition of a SIF (/proc/self/fd/N)', source: () => sif.source, offset: () => sif.getRootFsPartition().offset },
      { what: 'a bare squashfs image (path)', source: () => testImages().squashfs, offset: () => 0 },
      { what: 'a squashfs behind a 31-byte launch header', source: () => testImages().legacyHeader, offset: () => testImages().legacyHeaderOffset },
    ];
    for (const program of ['squashfuse_ll', 'squashfuse']) {
      for (const c of cases) {
        it(`${program} serves ${c.what} with a passed /dev/fuse fd: readable, ro,nosuid,nodev, writes refused`, async () => {
          const d = await driver(program === 'squashfuse' ? { programs: { squashfuse: '/usr/bin/squashfuse' } } : {});
          const t = target(program);
          const fdsBefore = openFds();
          const m = await d.mount(params({ source: c.source(), target: t, filesystem: 'squashfs', offset: c.offset() }), kernelMountFunc);
          expect(m.driver).to.equal('fuse');
          expect(m.fstype).to.equal(`fuse.${program}`);
          expect(m.readOnly).to.equal(true);
          expect(m.loopDevice).to.equal(null);
          expect(m.helpers.map((h) => h.program)).to.deep.equal([program]);
          expect(running(m.helpers[0]!.pid)).to.equal(true);
          // The helper runs in its own session and process group.
          const stat = fs.readFileSync(`/proc/${m.helpers[0]!.pid}/stat`, 'utf8');
          const [, , pgrp, session] = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
          expect(Number(pgrp)).to.equal(m.helpers[0]!.pid);
          expect(Number(session)).to.equal(m.helpers[0]!.pid);
          // It got the image as fd 3 and a /dev/fuse fd after it, nothing else of ours.
          expect(fs.readlinkSync(`/proc/${m.helpers[0]!.pid}/fd/4`)).to.equal('/dev/fuse');
          expect(fs.readFileSync(path.join(t, 'etc/hello.txt'), 'utf8')).to.equal(HELLO);
          expect(fs.statSync(path.join(t, 'bin/setuid-marker')).mode & 0o7777).to.equal(0o4755);
          const e = (await entryAt(t))!;
          expect(e.fstype).to.equal(`fuse.${program}`);
          expect(e.mountOptions).to.include.members(['ro', 'nosuid', 'nodev']);
          expect(() => fs.writeFileSync(path.join(t, 'new.txt'), 'x')).to.throw(/EROFS/);
          const record = await findMountRecord(t);
          expect(record?.helpers.map((h) => [h.program, h.pid])).to.deep.equal([[program, m.helpers[0]!.pid]]);
          expect(record?.fstype).to.equal(`fuse.${program}`);
          const closing = m.close();
          expect(m.close()).to.equal(closing); // idempotent
          await closing;
          expect(m.closed).to.equal(true);
          await m.close();
          await expectClean(t);
          expect(openFds(), 'fds leaked').to.deep.equal(fdsBefore);
          await d.stop('');
        });
      }
    }

    it('refuses a partition whose squashfs claims more bytes than the partition has, before starting a helper', async () => {
      const d = await driver();
      const t = target('bounds');
      const before = started.size;
      const part = sif.getRootFsPartition();
      const err = await rejection(d.mount(params({ source: sif.source, target: t, filesystem: 'squashfs', offset: part.offset, size: 4096 }), kernelMountFunc));
      expect(err.code).to.equal('ERR_SQUASHFS_INVALID');
      // What the squashfs needs, as unsquashfs -s reads it at the partition's offset.
      const needs = unsquashfsFacts(testImages().sif, part.offset).bytesUsed;
      expect(needs).to.be.above(4096);
      expect(err.message).to.include(`needs ${needs} bytes but only 4096`);
      const data = sif.getDataPartitions()[0]!;
      const ext = await rejection(d.mount(params({ source: sif.source, target: t, filesystem: 'ext3', offset: data.offset, size: data.size / 2 }), kernelMountFunc));
      expect(ext.code).to.equal('ERR_EXT3_INVALID');
      const none = await rejection(d.mount(params({ source: sif.source, target: t, filesystem: 'squashfs', offset: data.offset, size: data.size }), kernelMountFunc));
      expect(none.code).to.equal('ERR_PARTITION_INVALID');
      expect(started.size).to.equal(before);
      await expectClean(t);
      await d.stop('');
    });

    it('squashfuse_ll mounts by itself when fd passing is off, and the driver waits for it in mountinfo', async () => {
      const d = await driver({ fdPassing: false });
      const t = target('self');
      const m = await d.mount(params({ source: sif.source, target: t, filesystem: 'squashfs', offset: sif.getRootFsPartition().offset }), kernelMountFunc);
      expect(fs.readFileSync(path.join(t, 'etc/hello.txt'), 'utf8')).to.equal(HELLO);
      const e = (await entryAt(t))!;
      expect(e.fstype).to.equal('fuse.squashfuse_ll');
      expect(e.mountOptions).to.include.members(['ro', 'nosuid', 'nodev']);
      // No /dev/fuse of ours: it opened its own.
      expect(fs.readdirSync(`/proc/${m.helpers[0]!.pid}/fd`).map((n) => fs.readlinkSync(`/proc/${m.helpers[0]!.pid}/fd/${n}`))).to.include('/dev/fuse');
      await m.close();
      await expectClean(t);
      await d.stop('');
    });

    it('reports squashfuse refusing a legacy lzma image as ERR_HELPER_FAILED with its own words', async () => {
      const d = await driver();
      const t = target('lzma');
      const err = await rejection(d.mount(params({ source: testImages().lzmaSquashfs, target: t, filesystem: 'squashfs' }), kernelMountFunc));
      expect(err.code).to.equal('ERR_HELPER_FAILED');
      expect(err.message).to.match(/squashfuse_ll exited before serving/);
      expect(err.message).to.match(/supports only/);
      expect(err.details).to.include({ program: 'squashfuse_ll', signal: null });
      expect(err.details!.code).to.equal(255); // squashfuse_ll's exit(-1) for an image it cannot read
      await expectClean(t);
      expect(d.targets).to.deep.equal([]);
      await d.stop('');
    });
  });

  describe('ext3 by fuse2fs', () => {
    it('mounts the ext3 partition of a SIF at its offset read-only (no LD_PRELOAD), staged and placed ro, nosuid, nodev by the driver', async () => {
      const d = await driver();
      const data = sif.getDataPartitions()[0]!;
      // Where the ext3 partition is, read from the SIF's descriptor bytes (test/support/images).
      expect([data.offset, data.size]).to.deep.equal([testImages().sifParts.ext3.offset, testImages().sifParts.ext3.size]);
      const t = target('ext3-ro');
      const m = await d.mount(params({ source: sif.source, target: t, filesystem: 'ext3', offset: data.offset, size: data.size }), kernelMountFunc);
      expect(m.helpers.map((h) => h.program)).to.deep.equal(['fuse2fs']);
      const pid = m.helpers[0]!.pid;
      // fuse2fs (libfuse 2) mounts by itself: on a staging directory of our own session, never
      // on the caller's target, which only ever gets the finished clone.
      const argv = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
      expect(argv).to.include('/proc/self/fd/3');
      expect(argv).to.not.include(t);
      expect(argv.find((a) => a.endsWith('/stage-0'))).to.match(/\/sessions\/fuse-[^/]+\/stage-0$/);
      expect(await entryAt(argv.find((a) => a.endsWith('/stage-0'))!)).to.equal(undefined); // detached once placed
      expect(fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8')).to.include(`offset=${data.offset}`);
      expect(fs.readFileSync(`/proc/${pid}/environ`, 'utf8')).to.not.include('LD_PRELOAD');
      expect(fs.readFileSync(path.join(t, 'etc/hello.txt'), 'utf8')).to.equal(HELLO);
      const e = (await entryAt(t))!;
      // fuse2fs names its subtype after its own program name, "ext4" unless called ext2/ext3/ext4.
      expect(e.fstype).to.equal('fuse.ext4');
      expect(m.fstype).to.equal('fuse.ext4');
      expect(e.mountOptions).to.include.members(['ro', 'nosuid', 'nodev']);
      expect(m.readOnly).to.equal(true);
      expect(() => fs.writeFileSync(path.join(t, 'new.txt'), 'x')).to.throw(/EROFS/);
      await m.close();
      await expectClean(t);
      await d.stop('');
    });

    for (const kind of ['bare image', 'SIF partition'] as const) {
      it(`mounts an ext3 ${kind} read-write: a file written survives the unmount in the image copy`, async () => {
        const copy = path.join(testTmp, `rw-${kind === 'bare image' ? 'ext3.img' : 'image.sif'}`);
        fs.copyFileSync(kind === 'bare image' ? testImages().ext3 : testImages().sif, copy);
        const offset = kind === 'bare image' ? 0 : testImages().sifParts.ext3.offset;
        const d = await driver();
        const t = target('ext3-rw');
        const m = await d.mount(params({ source: copy, target: t, filesystem: 'ext3', offset, flags: MS_NOSUID | MS_NODEV }), kernelMountFunc);
        expect(m.readOnly).to.equal(false);
        expect((await entryAt(t))!.mountOptions).to.include('rw');
        fs.writeFileSync(path.join(t, 'written.txt'), 'persisted by fuse2fs\n');
        await m.close();
        await expectClean(t);
        // Mount the copy again (read-only): the file is in the image.
        const again = await d.mount(params({ source: copy, target: t, filesystem: 'ext3', offset }), kernelMountFunc);
        expect(fs.readFileSync(path.join(t, 'written.txt'), 'utf8')).to.equal('persisted by fuse2fs\n');
        expect(fs.readFileSync(path.join(t, 'etc/hello.txt'), 'utf8')).to.equal(HELLO);
        await again.close();
        await expectClean(t);
        if (kind === 'SIF partition') {
          // The partitions around it are untouched.
          const orig = fs.readFileSync(testImages().sif);
          const now = fs.readFileSync(copy);
          const sq = testImages().sifParts.squashfs;
          expect(now.subarray(sq.offset, sq.offset + sq.size).equals(orig.subarray(sq.offset, sq.offset + sq.size))).to.equal(true);
          const end = offset + testImages().sifParts.ext3.size;
          expect(now.subarray(end).equals(orig.subarray(end))).to.equal(true);
        }
        await d.stop('');
      });
    }
  });

  describe('gocryptfs', () => {
    let image: { sif: string; key: string };
    let enc: Image;
    before(async function () {
      this.timeout(60_000);
      image = await gocryptfsImage(path.join(testTmp, 'gocryptfs'));
      enc = await init(image.sif);
    });
    after(async () => {
      await enc?.close();
    });

    it('mounts a gocryptfs-squashfs SIF partition with the right key (squashfuse -> gocryptfs -> squashfuse) and releases the chain', async () => {
      expect(enc.encryptedRootFs()).to.equal('gocryptfs');
      const part = enc.getRootFsPartition();
      const d = await driver();
      const t = target('gocryptfs');
      const fdsBefore = openFds();
      const m = await d.mount(params({ source: enc.source, target: t, filesystem: 'gocryptfs', offset: part.offset, size: part.size, key: Buffer.from(image.key) }), kernelMountFunc);
      expect(m.helpers.map((h) => h.program)).to.deep.equal(['squashfuse_ll', 'gocryptfs', 'squashfuse_ll']);
      expect(m.fstype).to.equal('fuse.squashfuse_ll');
      expect(fs.readFileSync(path.join(t, 'etc/hello.txt'), 'utf8')).to.equal(HELLO);
      expect(fs.readFileSync(path.join(t, 'data/numbers.txt'))).to.deep.equal(fs.readFileSync(path.join(testImages().tree, 'data/numbers.txt')));
      // The key went to stdin only.
      for (const h of m.helpers) expect(fs.readFileSync(`/proc/${h.pid}/cmdline`, 'utf8')).to.not.include(image.key);
      const record = (await findMountRecord(t))!;
      expect(record.internalMounts.map((p) => path.basename(p))).to.deep.equal(['plain', 'cipher']);
      for (const p of record.internalMounts) expect(mountPoints()).to.include(p);
      expect(fs.statSync(record.sessionDir!).mode & 0o777).to.equal(0o700);
      expect((await entryAt(record.internalMounts[0]!))!.fstype).to.equal('fuse.gocryptfs');
      await m.close();
      for (const p of record.internalMounts) expect(mountPoints()).to.not.include(p);
      expect(fs.existsSync(record.sessionDir!)).to.equal(false);
      await expectClean(t);
      expect(openFds(), 'fds leaked').to.deep.equal(fdsBefore);
      await d.stop('');
    });

    it('a wrong key is ERR_KEY_REJECTED from gocryptfs\' own answer (no timeout), leaving nothing behind', async () => {
      const part = enc.getRootFsPartition();
      const d = await driver({ timeoutMs: 15_000 });
      const t = target('gocryptfs-wrong');
      const err = await rejection(
        d.mount(params({ source: enc.source, target: t, filesystem: 'gocryptfs', offset: part.offset, key: Buffer.from('not the key') }), kernelMountFunc),
      );
      expect(err.code).to.equal('ERR_KEY_REJECTED');
      expect(err.message).to.match(/Password incorrect/);
      expect((err.cause as ImgmountError).code).to.equal('ERR_HELPER_FAILED');
      await expectClean(t);
      await d.stop('');
    });

    it('a missing key is ERR_INVALID_ARG_VALUE before any helper starts', async () => {
      const before = started.size;
      const d = await driver();
      const t = target('gocryptfs-nokey');
      const err = await rejection(d.mount(params({ source: enc.source, target: t, filesystem: 'gocryptfs', offset: enc.getRootFsPartition().offset }), kernelMountFunc));
      expect(err.code).to.equal('ERR_INVALID_ARG_VALUE');
      expect(started.size).to.equal(before);
      await expectClean(t);
      await d.stop('');
    });

    it('a squashfs partition that is no gocryptfs container is a clear ERR_PARTITION_INVALID', async () => {
      const d = await driver();
      const t = target('gocryptfs-plain');
      const err = await rejection(
        d.mount(params({ source: sif.source, target: t, filesystem: 'gocryptfs', offset: sif.getRootFsPartition().offset, key: Buffer.from('k') }), kernelMountFunc),
      );
      expect(err.code).to.equal('ERR_PARTITION_INVALID');
      expect(err.message).to.match(/no gocryptfs\.conf/);
      await expectClean(t);
      await d.stop('');
    });

    it('aborting while gocryptfs starts undoes the chain', async () => {
      const ac = new AbortController();
      const d = await driver({ onHelperStart: (h) => h.program === 'gocryptfs' && ac.abort(new Error('enough')) });
      const t = target('gocryptfs-abort');
      const err = await rejection(
        d.mount(
          params({ source: enc.source, target: t, filesystem: 'gocryptfs', offset: enc.getRootFsPartition().offset, key: Buffer.from(image.key), signal: ac.signal }),
          kernelMountFunc,
        ),
      );
      expect(err).to.be.instanceOf(AbortError);
      await expectClean(t);
      await d.stop('');
    });
  });

  it('fuse-overlayfs over a squashfuse lower with a directory upper: writes go to the upper layer', async () => {
    const d = await driver();
    const lower = target('ovl-lower');
    const upper = path.join(testTmp, 'ovl', 'upper');
    const work = path.join(testTmp, 'ovl', 'work');
    fs.mkdirSync(upper, { recursive: true });
    fs.mkdirSync(work, { recursive: true });
    const t = target('ovl');
    const low = await d.mount(params({ source: testImages().squashfs, target: lower, filesystem: 'squashfs' }), kernelMountFunc);
    const ovl = await d.mount(
      params({ source: 'overlay', target: t, filesystem: 'overlay', flags: MS_NOSUID | MS_NODEV, fsOptions: [`lowerdir=${lower}`, `upperdir=${upper},workdir=${work}`, 'xino=on'] }),
      kernelMountFunc,
    );
    expect(ovl.fstype).to.equal('fuse.fuse-overlayfs');
    expect(ovl.readOnly).to.equal(false);
    expect(fs.readFileSync(`/proc/${ovl.helpers[0]!.pid}/cmdline`, 'utf8')).to.not.include('xino');
    expect(fs.readFileSync(path.join(t, 'etc/hello.txt'), 'utf8')).to.equal(HELLO);
    fs.writeFileSync(path.join(t, 'etc/new.txt'), 'upper\n');
    expect(fs.readFileSync(path.join(upper, 'etc/new.txt'), 'utf8')).to.equal('upper\n');
    expect(fs.existsSync(path.join(lower, 'etc/new.txt'))).to.equal(false);
    await d.stop(t);
    await d.stop(t); // idempotent
    expect(d.targets).to.deep.equal([lower]);
    await low.close();
    await expectClean(t);
    await d.stop('');
  });

  describe('helpers in a user namespace', () => {
    let holder: ChildProcess | undefined;
    before(function () {
      requireUserNamespaces(this);
    });
    afterEach(async () => {
      if (holder && holder.exitCode === null && holder.signalCode === null) {
        const gone = new Promise((r) => holder!.once('exit', r));
        holder.kill('SIGKILL');
        await gone;
      }
      holder = undefined;
    });

    async function startHolder(): Promise<number> {
      const h = await startNamespaceHolder(['-U', '-r', '-m']);
      holder = h;
      return h.pid!;
    }

    for (const fsName of ['squashfs', 'ext3'] as const) {
      it(`${fsName}: served from our namespaces (never the container's filesystem), moved into the container's, visible there only`, async () => {
        const pid = await startHolder();
        const d = await driver();
        const t = target(`userns-${fsName}`);
        const part = fsName === 'squashfs' ? sif.getRootFsPartition() : sif.getDataPartitions()[0]!;
        const m = await d.mount(params({ source: sif.source, target: t, filesystem: fsName, offset: part.offset, namespace: { pid } }), kernelMountFunc);
        const helper = m.helpers[0]!.pid;
        // The helper is ours: our user and mount namespaces, our filesystem's program.
        for (const ns of ['user', 'mnt']) expect(fs.readlinkSync(`/proc/${helper}/ns/${ns}`)).to.equal(fs.readlinkSync(`/proc/self/ns/${ns}`));
        expect(fs.readlinkSync(`/proc/${helper}/exe`)).to.equal(fsName === 'squashfs' ? '/usr/bin/squashfuse_ll' : '/usr/bin/fuse2fs');
        // Its own session (no terminal's signals reach it).
        const st = fs.readFileSync(`/proc/${helper}/stat`, 'utf8');
        expect(Number(st.slice(st.lastIndexOf(')') + 2).split(' ')[3])).to.equal(helper);
        const inside = (await entryAt(t, pid))!;
        expect(inside.fstype).to.equal(fsName === 'squashfs' ? 'fuse.squashfuse_ll' : 'fuse.ext4');
        expect(inside.mountOptions).to.include.members(['ro', 'nosuid', 'nodev']);
        expect(await entryAt(t)).to.equal(undefined);
        // Readable from inside the container's namespaces.
        expect(await catInNamespace(pid, path.join(t, 'etc/hello.txt'))).to.equal(HELLO);
        const record = (await findMountRecord(t, /\[(\d+)\]/.exec(fs.readlinkSync(`/proc/${pid}/ns/mnt`))![1]))!;
        expect(record.helpers[0]!.pid).to.equal(helper);
        await m.close();
        expect(await entryAt(t, pid)).to.equal(undefined);
        await expectClean(t);
        await d.stop('');
      });
    }

    it('the session user namespace (start({ config: { userns } })) is where helpers run when a mount names none', async () => {
      const pid = await startHolder();
      const d = new FuseDriver({ onHelperStart: (h) => started.set(h.pid, h.program) });
      // Only the user namespace: our mount namespace is not its, so mounting there is refused,
      // and the helper's own words say so.
      await d.start({ sessionPath: '', usernsFd: -1, fuseFd: -1, config: { userns: `/proc/${pid}/ns/user` } });
      const t = target('userns-only');
      const err = await rejection(d.mount(params({ source: sif.source, target: t, filesystem: 'squashfs', offset: sif.getRootFsPartition().offset, timeoutMs: 5000 }), kernelMountFunc));
      expect(err.code).to.equal('ERR_HELPER_FAILED');
      // Without our mount namespace's owner, libfuse falls back to fusermount3, which the
      // kernel refuses (EPERM); the driver adds what would let it mount.
      expect(err.message).to.equal(
        `squashfuse_ll exited before serving ${t} (exit status 1): fusermount3: mount failed: Operation not permitted ` +
          '(the helper may not mount here: run as root, give a namespace whose user namespace owns the mount namespace, or allow FUSE for this user)',
      );
      expect(err.details).to.include({ program: 'squashfuse_ll', code: 1, signal: null });
      await expectClean(t);
      await d.stop('');
    });
  });

  describe('failures', () => {
    const fakeDir = (): string => path.join(testTmp, 'fake-fuse-bin');

    it('a helper killed (SIGKILL) before mounting: ERR_HELPER_FAILED with its stderr, no mount, process or record', async () => {
      const fake = fakeHelper(fakeDir(), 'dies', 'echo "fake squashfuse: about to be killed" >&2\necho "fuse: warning: library too old" >&2\nkill -KILL $$');
      const d = await driver({ programs: { squashfuse: fake } });
      const t = target('killed');
      const err = await rejection(d.mount(params({ source: testImages().squashfs, target: t, filesystem: 'squashfs' }), kernelMountFunc));
      expect(err.code).to.equal('ERR_HELPER_FAILED');
      expect(err.message).to.include('killed by SIGKILL');
      expect(err.message).to.include('fake squashfuse: about to be killed');
      expect(err.message).to.not.include('library too old'); // noise filtered
      expect(err.details).to.include({ program: 'dies', signal: 'SIGKILL' });
      await expectClean(t);
      await d.stop('');
    });

    it('squashfuse_ll killed (SIGKILL) while its fd-passed mount waits for it: ERR_HELPER_FAILED, our mount undone', async () => {
      const d = await driver({ onHelperStart: (h) => process.kill(h.pid, 'SIGKILL') });
      const t = target('killed-fd');
      const err = await rejection(d.mount(params({ source: testImages().squashfs, target: t, filesystem: 'squashfs' }), kernelMountFunc));
      expect(err.code).to.equal('ERR_HELPER_FAILED');
      expect(err.details).to.include({ program: 'squashfuse_ll', signal: 'SIGKILL' });
      await expectClean(t);
      await d.stop('');
    });

    it('a helper that never mounts (binary path override) times out: ERR_HELPER_TIMEOUT naming program, target and timeout; killed', async () => {
      const dir = path.join(testTmp, 'fake-path');
      fakeHelper(dir, 'squashfuse_ll', 'echo "pretending to mount" >&2\nexec sleep 600');
      const d = await driver({ binaryPath: dir, timeoutMs: 300 });
      const t = target('timeout');
      const fdsBefore = openFds();
      const err = await rejection(d.mount(params({ source: testImages().squashfs, target: t, filesystem: 'squashfs' }), kernelMountFunc));
      expect(err.code).to.equal('ERR_HELPER_TIMEOUT');
      expect(err.message).to.include('squashfuse_ll').and.include(t).and.include('300 ms');
      expect(err.message).to.include('pretending to mount');
      expect(err.details).to.include({ program: 'squashfuse_ll', target: t, timeoutMs: 300 });
      await expectClean(t);
      expect(openFds(), 'fds leaked').to.deep.equal(fdsBefore);
      await d.stop('');
    });

    it('a stopped squashfuse_ll that never answers its fd-passed mount times out, is killed, and the mount undone', async () => {
      const d = await driver({ timeoutMs: 300, onHelperStart: (h) => process.kill(h.pid, 'SIGSTOP') });
      const t = target('timeout-fd');
      const err = await rejection(d.mount(params({ source: testImages().squashfs, target: t, filesystem: 'squashfs' }), kernelMountFunc));
      expect(err.code).to.equal('ERR_HELPER_TIMEOUT');
      await expectClean(t);
      await d.stop('');
    });

    it('aborting after the helper started stops it and undoes the mount; an aborted signal starts nothing', async () => {
      for (const fdPassing of ['auto', false] as const) {
        const ac = new AbortController();
        const d = await driver({ fdPassing, onHelperStart: () => ac.abort() });
        const t = target(`abort-${fdPassing}`);
        const err = await rejection(d.mount(params({ source: testImages().squashfs, target: t, filesystem: 'squashfs', signal: ac.signal }), kernelMountFunc));
        expect(err).to.be.instanceOf(AbortError);
        await expectClean(t);
        const before = started.size;
        const again = await rejection(d.mount(params({ source: testImages().squashfs, target: t, filesystem: 'squashfs', signal: ac.signal }), kernelMountFunc));
        expect(again).to.be.instanceOf(AbortError);
        expect(started.size).to.equal(before);
        await d.stop('');
      }
    });

    it('refuses what FUSE cannot mount with stable codes', async () => {
      const d = await driver();
      const t = target('refused');
      const enc = await rejection(d.mount(params({ source: testImages().sif, target: t, filesystem: 'encryptfs' }), kernelMountFunc));
      expect(enc.code).to.equal('ERR_ENCRYPTION_UNSUPPORTED');
      expect(enc.message).to.match(/device-mapper/);
      expect(enc.message).to.include(fs.existsSync('/dev/mapper/control') ? 'cryptsetup' : '/dev/mapper/control is missing');
      const unknown = await rejection(d.mount(params({ source: testImages().sif, target: t, filesystem: 'btrfs' }), kernelMountFunc));
      expect(unknown.code).to.equal('ERR_MOUNT_UNSUPPORTED_FS');
      const empty = path.join(testTmp, 'no-helpers');
      fs.mkdirSync(empty, { recursive: true });
      const none = await driver({ binaryPath: empty });
      const missing = await rejection(none.mount(params({ source: testImages().ext3, target: t, filesystem: 'ext3' }), kernelMountFunc));
      expect(missing.code).to.equal('ERR_FUSE_UNAVAILABLE');
      expect(missing.message).to.include('fuse2fs').and.include('Debian package fuse2fs').and.include('scripts/setup-host.sh');
      const badOverlay = await rejection(d.mount(params({ source: 'overlay', target: t, filesystem: 'overlay', fsOptions: ['upperdir=/x'] }), kernelMountFunc));
      expect(badOverlay.code).to.equal('ERR_INVALID_ARG_VALUE');
      await expectClean(t);
      await d.stop('');
      await none.stop('');
    });
  });

  describe('driver session', () => {
    it('mount before start() and after stop("") are ERR_DRIVER_STATE (no hang); stop("") releases what is left', async () => {
      const d = new FuseDriver({ onHelperStart: (h) => started.set(h.pid, h.program) });
      const t = target('state');
      const early = await rejection(d.mount(params({ source: testImages().squashfs, target: t, filesystem: 'squashfs' }), kernelMountFunc));
      expect(early.code).to.equal('ERR_DRIVER_STATE');
      await d.start({ sessionPath: '', usernsFd: -1, fuseFd: -1 });
      const m = await d.mount(params({ source: testImages().squashfs, target: t, filesystem: 'squashfs' }), kernelMountFunc);
      const twice = await rejection(d.mount(params({ source: testImages().squashfs, target: t, filesystem: 'squashfs' }), kernelMountFunc));
      expect(twice.code).to.equal('ERR_DRIVER_STATE');
      await d.stop('');
      expect(m.closed).to.equal(true);
      await expectClean(t);
      const late = await rejection(d.mount(params({ source: testImages().squashfs, target: t, filesystem: 'squashfs' }), kernelMountFunc));
      expect(late.code).to.equal('ERR_DRIVER_STATE');
      await d.stop('');
      await d.stop(t);
    });

    for (const kind of ['ext3', 'gocryptfs'] as const) {
      it(`a persistent ${kind} mount outlives its process and is released from another process by its record`, async function () {
        this.timeout(30_000);
        const t = target(`persist-${kind}`);
        const env = { ...process.env, IMGMOUNT_STATE_DIR: process.env.IMGMOUNT_STATE_DIR! };
        let mountParams: Record<string, unknown>;
        if (kind === 'ext3') {
          mountParams = { source: testImages().sif, filesystem: 'ext3', offset: testImages().sifParts.ext3.offset, size: testImages().sifParts.ext3.size };
        } else {
          const g = await gocryptfsImage(path.join(testTmp, 'gocryptfs'));
          const img = await init(g.sif);
          const part = img.getRootFsPartition();
          await img.close();
          mountParams = { source: g.sif, filesystem: 'gocryptfs', offset: part.offset, size: part.size, key: g.key };
        }
        const mountScript = `
          const { FuseDriver } = require(${JSON.stringify(path.join(distLib, 'drivers', 'fuse'))});
          const { kernelMountFunc } = require(${JSON.stringify(path.join(distLib, 'drivers', 'kernel'))});
          (async () => {
            const d = new FuseDriver({ persist: true });
            await d.start({ sessionPath: '', usernsFd: -1, fuseFd: -1 });
            const p = ${JSON.stringify(mountParams)};
            if (p.key) p.key = Buffer.from(p.key);
            const m = await d.mount({ ...p, target: ${JSON.stringify(t)}, flags: ${RO}, fsOptions: [] }, kernelMountFunc);
            process.stdout.write(JSON.stringify(m.helpers));
          })().catch((e) => { console.error(e); process.exit(1); });`;
        const r = spawnSync(process.execPath, ['-e', mountScript], { env, encoding: 'utf8', timeout: 20_000 });
        expect(r.status, r.stderr).to.equal(0);
        const helpers = JSON.parse(r.stdout) as Array<{ program: string; pid: number }>;
        for (const h of helpers) started.set(h.pid, h.program);
        expect(helpers.map((h) => h.program)).to.deep.equal(kind === 'ext3' ? ['fuse2fs'] : ['squashfuse_ll', 'gocryptfs', 'squashfuse_ll']);
        // The process is gone; its helpers and mounts stay.
        for (const h of helpers) expect(running(h.pid), `${h.program} running`).to.equal(true);
        expect(fs.readFileSync(path.join(t, 'etc/hello.txt'), 'utf8')).to.equal(HELLO);
        const record = (await findMountRecord(t))!;
        expect(record.helpers.map((h) => h.pid)).to.deep.equal(helpers.map((h) => h.pid));
        // Helper output goes to log files in the session directory (a pipe would break when we exit).
        expect(fs.readdirSync(record.sessionDir!).filter((n) => n.endsWith('.log'))).to.deep.equal(
          kind === 'ext3' ? ['0-fuse2fs.log'] : ['0-squashfuse_ll.log', '1-gocryptfs.log', '2-squashfuse_ll.log'],
        );
        const releaseScript = `
          const { releaseFuseMount } = require(${JSON.stringify(path.join(distLib, 'drivers', 'fuse'))});
          releaseFuseMount(${JSON.stringify(t)}).then((found) => process.stdout.write(String(found)), (e) => { console.error(e); process.exit(1); });`;
        const rel = spawnSync(process.execPath, ['-e', releaseScript], { env, encoding: 'utf8', timeout: 20_000 });
        expect(rel.status, rel.stderr).to.equal(0);
        expect(rel.stdout).to.equal('true');
        for (const p of record.internalMounts) expect(mountPoints()).to.not.include(p);
        await expectClean(t);
        expect(await releaseFuseMount(t)).to.equal(false);
      });
    }

    const exitScript = (t: string, options: string, end: string) => `
        const { FuseDriver } = require(${JSON.stringify(path.join(distLib, 'drivers', 'fuse'))});
        const { kernelMountFunc } = require(${JSON.stringify(path.join(distLib, 'drivers', 'kernel'))});
        (async () => {
          const d = new FuseDriver(${options});
          await d.start({ sessionPath: '', usernsFd: -1, fuseFd: -1 });
          const m = await d.mount({ source: ${JSON.stringify(testImages().squashfs)}, target: ${JSON.stringify(t)}, filesystem: 'squashfs',
            flags: ${RO}, offset: 0, size: 0, fsOptions: [] }, kernelMountFunc);
          process.stdout.write(JSON.stringify(m.helpers));
          ${end}
        })().catch((e) => { console.error(e); process.exit(1); });`;

    it('by default a process that exits without close() leaves its helpers serving (running containers use them); cleanup() sweeps them', async function () {
      this.timeout(30_000);
      const t = target('outlive');
      const r = spawnSync(process.execPath, ['-e', exitScript(t, '{}', '')], { env: process.env, encoding: 'utf8', timeout: 20_000 });
      expect(r.status, r.stderr).to.equal(0);
      const helpers = JSON.parse(r.stdout) as Array<{ program: string; pid: number }>;
      for (const h of helpers) started.set(h.pid, h.program);
      for (const h of helpers) expect(running(h.pid), `${h.program} still serving`).to.equal(true);
      expect(fs.readFileSync(path.join(t, 'etc/hello.txt'), 'utf8')).to.equal(HELLO);
      const record = (await findMountRecord(t))!;
      expect(record.owner?.pid).to.equal(r.pid);
      const report = await cleanup();
      const swept = report.swept.find((s) => s.target === t)!;
      expect(swept.errors).to.deep.equal([]);
      expect(swept.actions).to.include.members([`unmount ${t}`, 'remove the record']);
      await expectClean(t);
    });

    for (const [how, end] of [
      ['exits without close()', ''],
      ['is killed (SIGKILL)', "process.kill(process.pid, 'SIGKILL');"],
    ] as const) {
      it(`with dieWithOwner, a process that ${how} takes its helpers with it`, async function () {
        this.timeout(30_000);
        const t = target('die-with-owner');
        const r = spawnSync(process.execPath, ['-e', exitScript(t, '{ dieWithOwner: true }', end)], { env: process.env, encoding: 'utf8', timeout: 20_000 });
        expect(r.status === 0 || r.signal === 'SIGKILL', r.stderr).to.equal(true);
        const helpers = JSON.parse(r.stdout) as Array<{ program: string; pid: number }>;
        for (const h of helpers) started.set(h.pid, h.program);
        await eventually(() => helpers.every((h) => !running(h.pid)), 5000, 'the helpers to get their death signal');
        // Killed: the mount's server is gone, the mount and its record wait for cleanup().
        if (end) expect((await cleanup()).swept.map((s) => s.target)).to.include(t);
        await expectClean(t);
      });
    }
  });

  describe('event-driven mountinfo wait', () => {
    it('sees a mount made after it started, times out, stops, and aborts', async () => {
      const t = target('wait');
      const waiting = waitForMount({ pid: 'self', target: t, timeoutMs: 10_000 });
      await mount('tmpfs', t, 'tmpfs', MS_NOSUID | MS_NODEV, 'size=1m');
      const w = await waiting;
      expect(w.status).to.equal('mounted');
      expect(w.status === 'mounted' && w.entry.fstype).to.equal('tmpfs');
      await umount(t);
      expect((await waitForMount({ pid: 'self', target: t, timeoutMs: 50 })).status).to.equal('timeout');
      expect((await waitForMount({ pid: 'self', target: t, timeoutMs: 10_000, until: Promise.resolve() })).status).to.equal('stopped');
      const ac = new AbortController();
      const aborted = waitForMount({ pid: 'self', target: t, timeoutMs: 10_000, signal: ac.signal });
      ac.abort();
      expect(await rejection(aborted)).to.be.instanceOf(AbortError);
    });
  });

  it('filters the helpers\' routine chatter out of their output', () => {
    expect(
      filterHelperOutput('Reading Password from stdin\nDecrypting master key\nPassword incorrect.\nMounting read-only.\nunknown argument ignored: lazytime\nreal error\n'),
    ).to.equal('Password incorrect.\nreal error');
  });
});
