// The confused deputy (security model class 8): a root process opening images for a user
// must read only what that user may read. init's `as` opens the image with the user's
// credentials in a native child task (native/credentials.cc); here nobody (65534) names
// root-only files, unsearchable directories, block devices and overlays, and we check that
// each is refused, that what the user may read works end to end, and that the Node
// process's own credentials never change.
//
// Error chosen for "this user may not read it": ERR_IMAGE_NOT_READABLE (the SystemError,
// EACCES, from the step that failed, is its `cause`).
import { expect } from 'chai';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { ImgmountError, SIF, SANDBOX, SQUASHFS, EXT3, init, type Image } from '../../../lib';
import { attachLoop } from '../../../lib/loop';
import { findMounts, readMountInfo } from '../../../lib/mount';
import { native } from '../../../lib/native/binding';
import { root } from '../../../lib/root';
import { O_ACCMODE, fdFlags, openFds } from '../../support/fds';
import { fixture } from '../../support/fixtures';
import { mountDir } from '../../support/images';
import { requireKernel } from '../../support/kernel';
import { registerMountPoint } from '../../support/leaks';
import { repoRoot } from '../../support/paths';

const nobody = Object.freeze({ uid: 65534, gid: 65534, groups: [] as number[] });
const bin = path.join(repoRoot, 'bin', 'imgmount.js');

async function rejection(p: Promise<unknown>): Promise<ImgmountError & { cause?: NodeJS.ErrnoException }> {
  try {
    const v = await p;
    await (v as Image | undefined)?.close?.();
  } catch (err) {
    return err as ImgmountError & { cause?: NodeJS.ErrnoException };
  }
  throw new Error('expected a rejection, but it succeeded');
}

/** Opens `p` writable as nobody, who may read but not write it: a read-only image with a warning. */
async function expectReadOnlyFallback(p: string, type: number): Promise<void> {
  await using img = await init(p, true, { as: nobody });
  expect(img.type).to.equal(type);
  expect(img.writable).to.equal(false);
  expect(img.warnings).to.include(`${p} opened read-only: no write permission for uid 65534 (gid 65534)`);
  expect(fdFlags(img.fd) & O_ACCMODE).to.equal(fs.constants.O_RDONLY);
}

async function mountsUnder(dir: string) {
  return (await readMountInfo()).filter((m) => m.mountPoint === dir || m.mountPoint.startsWith(dir + '/'));
}

describe('kernel: init and root() acting for a user (as)', function () {
  // The suite's testTmp is 0700: nobody could not reach anything in it.
  let dir: string;
  const place = (name: string, from: string | null, mode: number, owner = 0): string => {
    const p = path.join(dir, name);
    if (from === null) fs.mkdirSync(p);
    else if (fs.statSync(from).isDirectory()) fs.cpSync(from, p, { recursive: true });
    else fs.copyFileSync(from, p);
    fs.chmodSync(p, mode);
    fs.chownSync(p, owner, owner);
    return p;
  };

  before(function () {
    requireKernel(this);
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'imgmount-as-'));
    fs.chmodSync(dir, 0o755);
  });
  after(() => {
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  it('a root-only image (0600) is not readable as nobody, directly or through the user\'s symlink; root still opens it', async () => {
    const secret = place('secret.sif', fixture('sif-basic.sif'), 0o600);
    const link = path.join(dir, 'my.sif');
    fs.symlinkSync(secret, link);
    const fds = openFds();
    for (const p of [secret, link]) {
      const err = await rejection(init(p, false, { as: nobody }));
      expect(err.code, err.message).to.equal('ERR_IMAGE_NOT_READABLE');
      expect(err.message).to.equal(`${p} is not readable by uid 65534 (gid 65534), check permissions`);
      expect(err.cause).to.include({ code: 'EACCES', syscall: 'open', path: p });
    }
    expect(openFds()).to.deep.equal(fds);
    await using img = await init(link);
    expect(img.type).to.equal(SIF);
    expect(img.path).to.equal(secret);
  });

  it('an image inside a directory nobody cannot search (0700) is refused', async () => {
    const hidden = place('hidden', null, 0o700);
    const inside = path.join(hidden, 'inside.sif');
    fs.copyFileSync(fixture('sif-basic.sif'), inside);
    fs.chmodSync(inside, 0o644);
    const err = await rejection(init(inside, false, { as: nobody }));
    expect(err.code, err.message).to.equal('ERR_IMAGE_NOT_READABLE');
    expect(err.cause).to.include({ code: 'EACCES', syscall: 'statx' });
    // The same file in a searchable directory is fine: it is the directory that stops nobody.
    fs.chmodSync(hidden, 0o711);
    await using img = await init(inside, false, { as: nobody });
    expect(img.type).to.equal(SIF);
  });

  it('a user\'s symlink to a block device is refused unless allowBlockDevice; root without as still opens it', async () => {
    const backing = place('disk.sqfs', fixture('sq-gzip.sqfs'), 0o644);
    await using dev = await attachLoop(backing, { readOnly: true });
    const link = path.join(dir, 'device.sif');
    fs.symlinkSync(dev.path, link);
    const mode = fs.statSync(dev.path).mode & 0o7777;
    // Unreadable by nobody (the usual 0600 or 0660 of a disk): not readable, whatever allowBlockDevice says.
    fs.chmodSync(dev.path, 0o600);
    try {
      const denied = await rejection(init(link, false, { as: nobody, allowBlockDevice: true }));
      expect(denied.code, denied.message).to.equal('ERR_IMAGE_NOT_READABLE');
      // Readable by nobody (a disk group the user is in, say): refused because it is a block device.
      fs.chmodSync(dev.path, 0o604);
      const fds = openFds();
      const err = await rejection(init(link, false, { as: nobody }));
      expect(err.code, err.message).to.equal('ERR_IMAGE_UNSUPPORTED_FILE_TYPE');
      expect(err.message).to.include(`leads to the block device ${dev.path}`);
      expect(err.message).to.include('allowBlockDevice: true');
      expect(openFds()).to.deep.equal(fds);
      {
        await using img = await init(link, false, { as: nobody, allowBlockDevice: true });
        expect(img.type).to.equal(SQUASHFS);
        expect(img.path).to.equal(dev.path);
        expect(img.partitions[0]!.size).to.equal(fs.statSync(backing).size);
      }
    } finally {
      fs.chmodSync(dev.path, mode);
    }
    // Without as, block devices stay allowed, as before.
    await using img = await init(link);
    expect(img.type).to.equal(SQUASHFS);
  });

  it('FIFOs and character devices named by the user are refused before open', async () => {
    const fifo = path.join(dir, 'fifo.sif');
    spawnSync('mkfifo', ['-m', '0666', fifo]);
    const tty = path.join(dir, 'null.sif');
    fs.symlinkSync('/dev/null', tty);
    for (const [p, what] of [[fifo, 'a FIFO'], [tty, 'a character device']] as const) {
      const err = await rejection(init(p, false, { as: nobody }));
      expect(err.code, err.message).to.equal('ERR_IMAGE_UNSUPPORTED_FILE_TYPE');
      expect(err.message).to.include(`is ${what}`);
    }
  });

  it('an image nobody may read but not write, asked writable, is opened read-only with a warning; nobody\'s own is writable', async () => {
    await expectReadOnlyFallback(place('root-owned.img', fixture('ext3.img'), 0o644), EXT3);
    const mine = place('nobody-owned.img', fixture('ext3.img'), 0o644, 65534);
    {
      await using img = await init(mine, true, { as: nobody });
      expect(img.writable).to.equal(true);
      expect(img.warnings).to.deep.equal([]);
      expect(fdFlags(img.fd) & O_ACCMODE).to.equal(fs.constants.O_RDWR);
    }
    // A squashfs the user may write: read-only fallback, and the fd gives up its write access.
    const sq = place('nobody-owned.sqfs', fixture('sq-gzip.sqfs'), 0o644, 65534);
    await using img = await init(sq, true, { as: nobody, readOnlyFallback: true });
    expect(img.writable).to.equal(false);
    expect(fdFlags(img.fd) & O_ACCMODE).to.equal(fs.constants.O_RDONLY);
  });

  it('a sandbox directory is opened as the user: writable only if they may write it', async () => {
    const tree = place('sandbox', fixture('rootfs'), 0o755);
    await expectReadOnlyFallback(tree, SANDBOX);
    fs.chownSync(tree, 65534, 65534);
    await using img = await init(tree, true, { as: nobody });
    expect(img.writable).to.equal(true);
  });

  it('a readable image works end to end as the user: same description as root\'s, and root() mounts it', async () => {
    const sif = place('public.sif', fixture('sif-basic.sif'), 0o644);
    await using mine = await init(sif, false, { as: nobody });
    await using roots = await init(sif);
    expect(mine.toJSON()).to.deep.include({ path: sif, name: 'public.sif', type: SIF, writable: false });
    expect(mine.partitions).to.deep.equal(roots.partitions);
    expect(mine.sections).to.deep.equal(roots.sections);
    expect(mine.source).to.equal(`/proc/self/fd/${mine.fd}`);
    const target = registerMountPoint(mountDir('as-root'));
    await using r = await root(mine, target, { driver: 'kernel' });
    expect(r.root).to.deep.equal({ path: target, readonly: true });
    expect(fs.readFileSync(path.join(target, 'etc/hello.txt'), 'utf8')).to.equal('hello from imgmount\n');
  });

  it('root(): an overlay nobody cannot read is refused, and one they cannot write cannot be the writable layer', async () => {
    await using img = await init(place('base.sif', fixture('sif-basic.sif'), 0o644), false, { as: nobody });
    const target = registerMountPoint(mountDir('as-overlay'));
    const closed = place('closed-overlay', null, 0o700);
    const secretImage = place('secret-overlay.img', fixture('ext3-empty.img'), 0o600);
    for (const overlay of [closed, secretImage]) {
      const err = await rejection(root(img, target, { driver: 'kernel', overlays: [overlay], as: nobody }));
      expect(err.code, err.message).to.equal('ERR_IMAGE_NOT_READABLE');
      expect(err.path).to.equal(overlay);
      expect(await mountsUnder(target)).to.deep.equal([]);
    }
    // Readable but root's: a lower layer is fine, the writable layer is not (root would write into it).
    const shared = place('shared-overlay', null, 0o755);
    {
      await using r = await root(img, target, { driver: 'kernel', overlays: [shared], as: nobody });
      expect(r.root.readonly).to.equal(true);
      expect(findMounts(await readMountInfo(), { mountPoint: target })[0]?.fstype).to.equal('overlay');
    }
    const err = await rejection(root(img, target, { driver: 'kernel', overlays: [{ path: shared, writable: true }], as: nobody }));
    expect(err.code, err.message).to.equal('ERR_READ_ONLY_FS');
    expect(fs.readdirSync(shared)).to.deep.equal([]); // no upper/work made in root's directory
    expect(await mountsUnder(target)).to.deep.equal([]);
  });

  it('the Node process keeps its credentials and fds through many concurrent openAs calls', async () => {
    const sif = place('many.sif', fixture('sif-basic.sif'), 0o644);
    const fds = openFds();
    const creds = () =>
      fs.readdirSync('/proc/self/task').map((t) => fs.readFileSync(`/proc/self/task/${t}/status`, 'utf8').match(/^(Uid|Gid|Groups):.*$/gm)!.join('|'));
    const before = new Set(creds());
    expect(before.size).to.equal(1); // every thread alike
    const results = await Promise.all(
      Array.from({ length: 32 }, (_, i) => native((b) => b.openAs(sif, fs.constants.O_RDONLY, { uid: 65534 + (i % 2), gid: 65534, groups: [i] }))),
    );
    for (const r of results) fs.closeSync(r.fd);
    expect(new Set(results.map((r) => r.ino)).size).to.equal(1);
    expect(new Set(creds())).to.deep.equal(before);
    expect(process.geteuid!()).to.equal(0);
    expect(openFds()).to.deep.equal(fds);
  });

  it('imgmount --as: inspect as nobody fails on a root-only image, --as 0:0 reads it; root --overlay is checked too', async () => {
    const secret = place('cli-secret.sif', fixture('sif-basic.sif'), 0o600);
    const run = (...args: string[]) => spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8' });
    const denied = run('inspect', '--as', '65534', secret);
    expect(denied.status, denied.stderr).to.equal(1);
    expect(denied.stderr).to.equal(`imgmount: ${secret} is not readable by uid 65534 (gid 65534), check permissions\n`);
    const ok = run('inspect', '--as', '0:0', secret);
    expect(ok.status, ok.stderr).to.equal(0);
    expect(ok.stdout).to.match(/type:\s+SIF/);
    const read = run('read', '--as', '65534:65534', secret, '--index', '0');
    expect(read.status).to.equal(1);
    const target = registerMountPoint(mountDir('as-cli'));
    const closed = place('cli-closed-overlay', null, 0o700);
    const r = run('root', '--as', '65534', '--driver', 'kernel', '--overlay', closed, place('cli-public.sif', fixture('sif-basic.sif'), 0o644), target);
    expect(r.status, r.stderr).to.equal(1);
    expect(r.stderr).to.equal(`imgmount: ${closed} is not readable by uid 65534 (gid 65534), check permissions\n`);
    expect(await mountsUnder(target)).to.deep.equal([]);
  });
});
