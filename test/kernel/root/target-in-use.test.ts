// One mount per target: a mount record's first write is exclusive (link(2)), so a second
// root()/mountImage() onto a target that already has a record (of this process, another one, a
// persistent mount or a process that died) is ERR_TARGET_IN_USE before anything is mounted,
// and the first mount's record stays intact and is still removed by its own close().
//  - two roots from one process; from two processes; several at once (exactly one wins);
//  - a record left by a process killed with kill -9: refused saying cleanup sweeps it, and
//    after cleanup() a root there works;
//  - a persistent mount (`imgmount mount`): refused, `imgmount umount` releases it;
//  - an invalid record at the target: refused as such, nothing in it acted on;
//  - a target reached through a symlink: refused under its real name.
// Every case ends with nothing left (leftovers()).
import { expect } from 'chai';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { init } from '../../../lib/image/init';
import { findMountRecord, mountRecordFile, type MountRecord } from '../../../lib/drivers/mount-record';
import { findMounts, readMountInfo } from '../../../lib/mount';
import { mountImage } from '../../../lib/root/mount-image';
import { root } from '../../../lib/root/root';
import { cleanup } from '../../../lib/root/cleanup';
import { kernelMountFunc } from '../../../lib/drivers/kernel';
import { FuseDriver } from '../../../lib/drivers/fuse';
import { MS_RDONLY } from '../../../lib/mount/flags';
import { markedHelpers } from '../../support/scene';
import { rejection, restoreEnv, setEnv } from '../../support/forgery';
import { requireKernel, stopHolder } from '../../support/kernel';
import { repoRoot } from '../../support/paths';
import { leftovers, scene as newScene, type Scene } from '../../support/scene';

const childScript = path.join(repoRoot, 'dist', 'test', 'support', 'crash-child.js');
const bin = path.join(repoRoot, 'bin', 'imgmount.js');

const scene = (): Scene => {
  const s = newScene('in-use');
  setEnv('IMGMOUNT_STATE_DIR', s.state);
  return s;
};

const mountsAt = async (t: string): Promise<string[]> => findMounts(await readMountInfo(), { mountPoint: t }).map((m) => m.fstype);

/** A daemon (test/support/crash-child) holding a kernel root at `target` until it is killed. */
async function holder(s: Scene, target: string): Promise<ChildProcess> {
  const child = spawn(process.execPath, [childScript, JSON.stringify({ killAt: null, roots: [{ image: s.sif, target, options: { driver: 'kernel' } }] })], {
    env: { ...process.env, IMGMOUNT_STATE_DIR: s.state },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const line = await new Promise<string>((resolve) => child.stdout!.once('data', (d: Buffer) => resolve(d.toString())));
  expect(JSON.parse(line), line).to.have.property('done', true);
  return child;
}

describe('kernel: one mount per target (ERR_TARGET_IN_USE)', function () {
  this.timeout(60_000);
  before(function () {
    requireKernel(this);
  });
  afterEach(() => restoreEnv());

  it('two roots onto one target from one process: the second is refused, the first keeps working and its record, and close() removes it', async () => {
    const s = scene();
    const t = s.target('root');
    await using img = await init(s.sif);
    const first = await root(img, t, { driver: 'kernel', writableTmpfs: true });
    const before = (await findMountRecord(t))!;
    const mounts = await mountsAt(t);
    for (const options of [{ driver: 'kernel' as const }, { driver: 'kernel' as const, writableTmpfs: true }, { driver: 'fuse' as const }]) {
      const err = await rejection(root(img, t, options));
      expect(err.code, JSON.stringify(options)).to.equal('ERR_TARGET_IN_USE');
      expect(err.message).to.include(t).and.to.include(`a root mounted by pid ${process.pid} (this process, still running)`);
      expect(err.details).to.deep.include({ holder: 'live', pid: process.pid, record: await mountRecordFile(t) });
    }
    const viaMountImage = await rejection(mountImage(img, t, { driver: 'kernel' }));
    expect(viaMountImage.code).to.equal('ERR_TARGET_IN_USE');
    // Nothing was stacked, the first record is as it was, and the first root still serves.
    expect(await mountsAt(t)).to.deep.equal(mounts);
    expect(await findMountRecord(t)).to.deep.equal(before);
    fs.writeFileSync(path.join(t, 'still-writable'), 'yes');
    await first.close();
    expect(await findMountRecord(t)).to.equal(undefined);
    expect(await leftovers(s, process.pid)).to.deep.equal([]);
  });

  it('several root() calls on one target at once: exactly one succeeds, the others are ERR_TARGET_IN_USE', async () => {
    const s = scene();
    const t = s.target('root');
    await using img = await init(s.sif);
    const results = await Promise.allSettled([1, 2, 3, 4, 5, 6].map((i) => root(img, t, i % 2 ? { driver: 'kernel' } : { driver: 'kernel', writableTmpfs: true })));
    const won = results.filter((r) => r.status === 'fulfilled');
    const lost = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
    expect(won, lost.map((r) => (r.reason as Error).message).join('\n')).to.have.length(1);
    for (const r of lost) expect((r.reason as { code?: string }).code, (r.reason as Error).message).to.equal('ERR_TARGET_IN_USE');
    expect(await mountsAt(t)).to.have.length(1);
    await won[0]!.value.close();
    expect(await leftovers(s, process.pid)).to.deep.equal([]);
  });

  it('a root another process holds: refused naming its pid; once it is killed, refused saying cleanup sweeps it; after cleanup() a root there works', async () => {
    const s = scene();
    const t = s.target('root');
    await using img = await init(s.sif);
    const child = await holder(s, t);
    try {
      const held = (await findMountRecord(t))!;
      const err = await rejection(root(img, t, { driver: 'kernel', writableTmpfs: true }));
      expect(err.code).to.equal('ERR_TARGET_IN_USE');
      expect(err.message).to.include(`a root mounted by pid ${child.pid} (still running)`);
      expect(await findMountRecord(t)).to.deep.equal(held);
      expect(await mountsAt(t)).to.deep.equal(['squashfs']);
    } finally {
      await stopHolder(child);
    }
    // kill -9: its mount and record stay, for cleanup().
    const stale = await rejection(root(img, t, { driver: 'kernel' }));
    expect(stale.code).to.equal('ERR_TARGET_IN_USE');
    expect(stale.message).to.match(new RegExp(`left from a process that died \\(pid ${child.pid}\\).*\`imgmount cleanup\` \\(or cleanup\\(\\)\\) sweeps it`));
    expect(stale.details).to.deep.include({ holder: 'dead', pid: child.pid });
    expect(await mountsAt(t)).to.deep.equal(['squashfs']);
    const report = await cleanup();
    expect(report.swept.map((e) => e.target)).to.deep.equal([t]);
    const again = await root(img, t, { driver: 'kernel' });
    expect((await findMountRecord(t))?.owner?.pid).to.equal(process.pid);
    await again.close();
    expect(await leftovers(s, child.pid!)).to.deep.equal([]);
    expect(await leftovers(s, process.pid)).to.deep.equal([]);
  });

  it('a persistent mount (imgmount mount): refused, saying imgmount umount releases it; it does, and a root there then works', async () => {
    const s = scene();
    const t = s.target('root');
    const env = { ...process.env, IMGMOUNT_STATE_DIR: s.state };
    const made = spawnSync(process.execPath, [bin, 'mount', '--driver', 'kernel', s.sif, t], { env, encoding: 'utf8' });
    expect(made.status, made.stderr).to.equal(0);
    await using img = await init(s.sif);
    try {
      const err = await rejection(root(img, t, { driver: 'kernel' }));
      expect(err.code).to.equal('ERR_TARGET_IN_USE');
      expect(err.message).to.include('a persistent mount').and.to.include(`\`imgmount umount ${t}\``);
      // The CLI refuses the same way (a second `imgmount mount` onto it).
      const twice = spawnSync(process.execPath, [bin, 'mount', '--driver', 'kernel', s.sif, t], { env, encoding: 'utf8' });
      expect(twice.status).to.not.equal(0);
      expect(twice.stderr).to.include(`cannot mount at ${t}: the target is in use: a persistent mount`);
      expect(await mountsAt(t)).to.deep.equal(['squashfs']);
    } finally {
      const gone = spawnSync(process.execPath, [bin, 'umount', t], { env, encoding: 'utf8' });
      expect(gone.status, gone.stderr).to.equal(0);
    }
    await (await root(img, t, { driver: 'kernel' })).close();
    expect(await leftovers(s, process.pid)).to.deep.equal([]);
  });

  it('the FUSE driver on its own, onto a target a root holds: refused before any helper starts', async () => {
    const s = scene();
    const t = s.target('root');
    await using img = await init(s.sif);
    const first = await root(img, t, { driver: 'kernel' });
    const held = (await findMountRecord(t))!;
    const started: number[] = [];
    const d = new FuseDriver({ onHelperStart: (h) => started.push(h.pid) });
    await d.start({ sessionPath: '', usernsFd: -1, fuseFd: -1 });
    try {
      const part = img.getRootFsPartition();
      const err = await rejection(d.mount({ source: s.sif, target: t, filesystem: 'squashfs', flags: MS_RDONLY, offset: part.offset, size: part.size, fsOptions: [] }, kernelMountFunc));
      expect(err.code, err.message).to.equal('ERR_TARGET_IN_USE');
      expect(started).to.deep.equal([]);
      expect(markedHelpers(process.pid)).to.deep.equal([]);
      expect(await findMountRecord(t)).to.deep.equal(held);
      expect(await mountsAt(t)).to.deep.equal(['squashfs']);
    } finally {
      await d.stop('');
    }
    await first.close();
    expect(await leftovers(s, process.pid)).to.deep.equal([]);
  });

  it('an invalid record at the target: refused as such, and nothing in it is acted on', async () => {
    const s = scene();
    const t = s.target('root');
    const file = await mountRecordFile(t);
    fs.writeFileSync(file, JSON.stringify({ target: t, mntns: 'forged' }), { mode: 0o600 });
    await using img = await init(s.sif);
    const err = await rejection(root(img, t, { driver: 'kernel', writableTmpfs: true }));
    expect(err.code).to.equal('ERR_TARGET_IN_USE');
    expect(err.message).to.include(`its mount record ${file} is invalid`);
    expect((err.cause as { code?: string }).code).to.equal('ERR_MOUNT_RECORD_INVALID');
    expect(err.details).to.deep.include({ holder: 'invalid' });
    expect(await mountsAt(t)).to.deep.equal([]);
    expect(JSON.parse(fs.readFileSync(file, 'utf8'))).to.deep.equal({ target: t, mntns: 'forged' });
    fs.unlinkSync(file);
    expect(await leftovers(s, process.pid)).to.deep.equal([]);
  });

  it('a target reached through a symlink: refused under its real name, and the record under the link name is gone', async () => {
    const s = scene();
    const t = s.target('root');
    const link = path.join(s.dir, 'link');
    fs.symlinkSync(t, link);
    await using img = await init(s.sif);
    const first = await root(img, t, { driver: 'kernel' });
    const held: MountRecord = (await findMountRecord(t))!;
    const err = await rejection(root(img, link, { driver: 'kernel', writableTmpfs: true }));
    expect(err.code).to.equal('ERR_TARGET_IN_USE');
    expect(err.message).to.include(`cannot mount at ${t}:`);
    expect(await findMountRecord(link)).to.equal(undefined);
    expect(await findMountRecord(t)).to.deep.equal(held);
    expect(await mountsAt(t)).to.deep.equal(['squashfs']);
    await first.close();
    expect(await leftovers(s, process.pid)).to.deep.equal([]);
  });
});
