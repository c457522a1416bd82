// Crash safety: a daemon killed at any moment leaves nothing that cleanup() cannot sweep, and
// an abort at any step leaves nothing at all.
//  - kill -9 at every checkpoint of root() (lib/util/checkpoint), at random moments, and after
//    it, for a kernel root with a tmpfs overlay and a data partition and for a FUSE root; then
//    cleanup(): no mount, loop device, helper, session directory or record is left;
//  - `imgmount cleanup` after a process holding three roots is killed; a live process's root
//    is never touched; a second run finds nothing; --dry-run changes nothing;
//  - an abort at every checkpoint of root(), mountImage(), mount() and bindMount(): nothing
//    left, no fd leaked.
import { expect } from 'chai';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { init } from '../../../lib/image/init';
import { listMountRecords } from '../../../lib/drivers/mount-record';
import { bindMount, findMounts, mount, mountInNamespace, moveMountIntoNamespace, readMountInfo, umount, unmountInNamespace } from '../../../lib/mount';
import { attachLoop, detachLoop } from '../../../lib/loop';
import { native } from '../../../lib/native/binding';
import { closeFd } from '../../../lib/io/fd';
import { mountImage } from '../../../lib/root/mount-image';
import { root, type RootOptions } from '../../../lib/root/root';
import { cleanup } from '../../../lib/root/cleanup';
import { setCheckpointHook } from '../../../lib/util/checkpoint';
import { openFds } from '../../support/fds';
import { restoreEnv, setEnv } from '../../support/forgery';
import { testImages } from '../../support/images';
import { requireKernel, startNamespaceHolder, stopHolder } from '../../support/kernel';
import { boundLoops, mountPoints } from '../../support/leaks';
import { repoRoot } from '../../support/paths';
import { leftovers, scene as newScene, type Scene } from '../../support/scene';

const childScript = path.join(repoRoot, 'dist', 'test', 'support', 'crash-child.js');
const bin = path.join(repoRoot, 'bin', 'imgmount.js');

/** A directory of its own: the image copy, the targets and the state directory, all inside it. */
const scene = (): Scene => newScene('crash');

async function codeOf(p: Promise<unknown>): Promise<string | undefined> {
  return p.then(
    () => 'resolved',
    (e: unknown) => (e as { code?: string }).code,
  );
}

/** Runs the crash child; resolves with its last line and how it ended. */
function runChild(s: Scene, cmd: unknown, killAfterMs?: number): Promise<{ child: ChildProcess; lines: Array<Record<string, unknown>>; signal: string | null }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [childScript, JSON.stringify(cmd)], { env: { ...process.env, IMGMOUNT_STATE_DIR: s.state }, stdio: ['ignore', 'pipe', 'inherit'] });
    const lines: Array<Record<string, unknown>> = [];
    let buf = '';
    const timer = killAfterMs !== undefined ? setTimeout(() => child.kill('SIGKILL'), killAfterMs) : undefined;
    child.stdout!.setEncoding('utf8');
    child.stdout!.on('data', (d: string) => {
      buf += d;
      for (let i; (i = buf.indexOf('\n')) >= 0; buf = buf.slice(i + 1)) {
        const line = JSON.parse(buf.slice(0, i)) as Record<string, unknown>;
        lines.push(line);
        // Done: the daemon holds its roots; now it dies.
        if (line.done) child.kill('SIGKILL');
      }
    });
    child.once('exit', (_code, signal) => {
      if (timer) clearTimeout(timer);
      resolve({ child, lines, signal });
    });
  });
}

async function sweepAndCheck(s: Scene, owner: number, what: string): Promise<void> {
  const report = await cleanup();
  for (const e of report.swept) expect(e.errors, `${what}: ${e.target}`).to.deep.equal([]);
  expect(report.invalid, what).to.deep.equal([]);
  expect(await leftovers(s, owner), what).to.deep.equal([]);
  // Idempotent.
  const again = await cleanup();
  expect([again.swept, again.orphans], `${what}, second run`).to.deep.equal([[], []]);
}

describe('kernel: crash safety (kill -9 at any point, then cleanup)', function () {
  this.timeout(300_000);
  before(function () {
    requireKernel(this);
  });
  afterEach(() => {
    setCheckpointHook(undefined);
    restoreEnv();
  });

  const configs: Array<[string, (s: Scene) => { roots: Array<{ image: string; target: string; options: RootOptions }> }]> = [
    ['a kernel root with a tmpfs overlay and a data partition', (s) => ({ roots: [{ image: s.sif, target: s.target('root'), options: { driver: 'kernel', writableTmpfs: true, data: [{ partition: 'data', path: '/data' }] } }] })],
    ['a FUSE root (squashfuse_ll under fuse-overlayfs)', (s) => ({ roots: [{ image: s.sif, target: s.target('root'), options: { driver: 'fuse', writableTmpfs: true } }] })],
  ];

  for (const [name, make] of configs) {
    it(`${name}: killed at every checkpoint of root() and after it, cleanup() leaves the machine as it was`, async () => {
      let k = 1;
      const seen: string[] = [];
      for (; ; k++) {
        const s = scene();
        setEnv('IMGMOUNT_STATE_DIR', s.state);
        const r = await runChild(s, { killAt: k, ...make(s) });
        expect(r.signal, `run ${k}: ${JSON.stringify(r.lines)}`).to.equal('SIGKILL');
        const at = r.lines.find((l) => l.killedAt)?.killedAt as string | undefined;
        seen.push(at ?? 'after root()');
        await sweepAndCheck(s, r.child.pid!, `killed at checkpoint ${k} (${at ?? 'after root()'})`);
        if (!at) break; // the root was complete: that was the kill "after it"
      }
      expect(k, 'checkpoints covered').to.be.greaterThan(5);
      expect(seen).to.include.members(['root:recorded', 'root:overlay', 'after root()']);
    });

    it(`${name}: killed at random moments, cleanup() leaves the machine as it was`, async () => {
      for (let i = 0; i < 8; i++) {
        const s = scene();
        setEnv('IMGMOUNT_STATE_DIR', s.state);
        // Node starts in ~50 ms here and root() takes a few to a few tens: aim into it.
        const r = await runChild(s, { killAt: null, ...make(s) }, 40 + Math.floor(Math.random() * 120));
        expect(r.signal).to.equal('SIGKILL');
        await sweepAndCheck(s, r.child.pid!, `killed at random moment ${i}`);
      }
    });
  }

  it('imgmount cleanup after a process holding three roots (kernel + tmpfs, FUSE, data partition) is killed; a live one is left alone', async () => {
    const s = scene();
    setEnv('IMGMOUNT_STATE_DIR', s.state);
    const three = {
      roots: [
        { image: s.sif, target: s.target('kernel-tmpfs'), options: { driver: 'kernel', writableTmpfs: true } },
        { image: s.sif, target: s.target('fuse'), options: { driver: 'fuse' } },
        { image: s.sif, target: s.target('data'), options: { driver: 'kernel', data: [{ partition: 'data', path: '/data' }] } },
      ],
    };
    // A live daemon's root (its own copy of the image), in the same state directory: never touched.
    const liveTarget = s.target('live');
    const liveSif = path.join(s.dir, 'live.sif');
    fs.copyFileSync(s.sif, liveSif);
    const live = spawn(process.execPath, [childScript, JSON.stringify({ killAt: null, roots: [{ image: liveSif, target: liveTarget, options: { driver: 'kernel' } }] })], {
      env: { ...process.env, IMGMOUNT_STATE_DIR: s.state },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    await new Promise<void>((resolve) => live.stdout!.once('data', () => resolve()));
    try {
      const dead = await runChild(s, { killAt: null, ...three });
      expect(dead.lines.some((l) => l.done)).to.equal(true);
      const left = await leftovers(s, dead.child.pid!);
      // live 1, the tmpfs root 1 (its layers detached inside the overlay; 3 on the general path), FUSE 1, data 2.
      expect(left.filter((l) => l.startsWith('mount ')).length, left.join('\n')).to.be.at.least(5);
      expect(left.some((l) => l.startsWith('helper '))).to.equal(true);
      const dry = spawnSync(process.execPath, [bin, 'cleanup', '--dry-run', '--json'], { env: { ...process.env, IMGMOUNT_STATE_DIR: s.state }, encoding: 'utf8' });
      expect(dry.status, dry.stderr).to.equal(0);
      expect((JSON.parse(dry.stdout) as { swept: unknown[] }).swept.length).to.be.greaterThanOrEqual(3);
      expect(await leftovers(s, dead.child.pid!)).to.deep.equal(left); // a dry run changes nothing
      const run = spawnSync(process.execPath, [bin, 'cleanup', '--json'], { env: { ...process.env, IMGMOUNT_STATE_DIR: s.state }, encoding: 'utf8' });
      expect(run.status, run.stderr).to.equal(0);
      const report = JSON.parse(run.stdout) as { swept: Array<{ target: string; errors: string[] }>; kept: Array<{ target: string }> };
      expect(report.swept.map((e) => e.target)).to.include.members(three.roots.map((r) => r.target));
      for (const e of report.swept) expect(e.errors, e.target).to.deep.equal([]);
      expect(report.kept.map((k) => k.target)).to.deep.equal([liveTarget]);
      const stillLeft = (await leftovers(s, dead.child.pid!)).filter((l) => !l.includes('/live') && !l.startsWith('mounts/'));
      expect(stillLeft).to.deep.equal([]);
      expect(mountPoints()).to.include(liveTarget);
      const second = spawnSync(process.execPath, [bin, 'cleanup'], { env: { ...process.env, IMGMOUNT_STATE_DIR: s.state }, encoding: 'utf8' });
      expect(second.status).to.equal(0);
      expect(second.stdout).to.match(/nothing to clean up/);
    } finally {
      live.kill('SIGKILL');
      await new Promise((r) => live.once('exit', r));
    }
    await sweepAndCheck(s, live.pid!, 'after the live one died too');
  });
});

describe('kernel: releasing a mount whose FUSE helper hangs', function () {
  this.timeout(60_000);
  before(function () {
    requireKernel(this);
  });
  afterEach(() => restoreEnv());

  it('close() and imgmount umount finish with the helper stopped (SIGSTOP), and leave nothing', async () => {
    const s = scene();
    setEnv('IMGMOUNT_STATE_DIR', s.state);
    const img = await init(s.sif);
    const r = await root(img, s.target('hung'), { driver: 'fuse' });
    const helper = r.mounts[0]!.helpers[0]!.pid;
    process.kill(helper, 'SIGSTOP');
    await r.close(); // unmounted through its pinned fd, the helper escalated to SIGKILL: nothing stats the hung mount
    await img.close();
    expect(await leftovers(s, process.pid)).to.deep.equal([]);
    // From another process, by the target's name alone (a persistent mount of the CLI).
    const t = s.target('hung-cli');
    const env = { ...process.env, IMGMOUNT_STATE_DIR: s.state };
    const m = spawnSync(process.execPath, [bin, 'mount', '--driver', 'fuse', '--json', s.sif, t], { env, encoding: 'utf8' });
    expect(m.status, m.stderr).to.equal(0);
    const pid = (JSON.parse(m.stdout) as { mounts: Array<{ helpers: Array<{ pid: number }> }> }).mounts[0]!.helpers[0]!.pid;
    process.kill(pid, 'SIGSTOP');
    const u = spawnSync(process.execPath, [bin, 'umount', t], { env, encoding: 'utf8' });
    expect(u.status, u.stderr).to.equal(0);
    expect(leftoversSync(s)).to.deep.equal([]);
    expect(fs.existsSync(`/proc/${pid}`) && !fs.readFileSync(`/proc/${pid}/stat`, 'utf8').includes(') Z ')).to.equal(false);
  });
});

describe('kernel: imgmount mount|root interrupted by SIGINT/SIGTERM', function () {
  this.timeout(120_000);
  before(function () {
    requireKernel(this);
  });

  // The one-call tmpfs root has few steps (before the call, after it); mount(2) takes the general
  // path, a step per layer, directory and record write.
  for (const [cmd, sig, status, path, steps] of [
    ['mount', 'SIGINT', 130, 'one native call', 2],
    ['root', 'SIGTERM', 143, 'one native call', 2],
    ['mount', 'SIGINT', 130, 'general path (mount(2))', 6],
    ['root', 'SIGTERM', 143, 'general path (mount(2))', 6],
  ] as const) {
    it(`imgmount ${cmd} --writable-tmpfs (${path}), ${sig} at each step: undone, exit ${status}; uninterrupted, umount releases it`, () => {
      let k = 1;
      for (; ; k++) {
        const s = scene();
        const t = s.target('root');
        const env = {
          ...process.env,
          IMGMOUNT_STATE_DIR: s.state,
          IMGMOUNT_TEST_INTERRUPT_AT: `${k}:${sig}`,
          ...(steps > 2 ? { IMGMOUNT_MOUNT_API: 'legacy' } : {}),
        };
        const r = spawnSync(process.execPath, [bin, cmd, '--writable-tmpfs', '--data', 'unused', s.sif, t].filter((a) => a !== '--data' && a !== 'unused'), { env, encoding: 'utf8' });
        if (r.status === 0) {
          const u = spawnSync(process.execPath, [bin, 'umount', t], { env, encoding: 'utf8' });
          expect(u.status, u.stderr).to.equal(0);
          expect(leftoversSync(s)).to.deep.equal([]);
          break;
        }
        expect(r.status, `interrupted at step ${k}: ${r.stderr}`).to.equal(status);
        expect(r.stderr).to.match(new RegExp(`interrupted by ${sig}: what had been mounted was undone`));
        expect(leftoversSync(s), `interrupted at step ${k}`).to.deep.equal([]);
      }
      expect(k, 'steps interrupted').to.be.at.least(steps);
    });
  }
});

/** leftovers() without helpers (the CLI's are not marked: its mounts are meant to outlive it). */
function leftoversSync(s: Scene): string[] {
  const left: string[] = [];
  for (const m of mountPoints()) if (m === s.dir || m.startsWith(s.dir + '/')) left.push(`mount ${m}`);
  for (const l of boundLoops()) if (l.backingFile.startsWith(s.dir + '/')) left.push(`loop ${l.name} -> ${l.backingFile}`);
  for (const sub of ['mounts', 'sessions']) {
    const d = path.join(s.state, sub);
    if (fs.existsSync(d)) for (const n of fs.readdirSync(d)) left.push(`${sub}/${n}`);
  }
  return left;
}

describe('kernel: an abort at any step leaves nothing', function () {
  this.timeout(120_000);
  before(function () {
    requireKernel(this);
  });
  afterEach(() => {
    setCheckpointHook(undefined);
    restoreEnv();
  });

  /** Runs `op` once per checkpoint, aborting at the k-th, until it completes: each aborted run leaves nothing. */
  async function abortEverywhere(name: string, op: (s: Scene, signal: AbortSignal) => Promise<{ close(): Promise<void> } | void>): Promise<number> {
    for (let k = 1; ; k++) {
      const s = scene();
      setEnv('IMGMOUNT_STATE_DIR', s.state);
      const fds = openFds();
      const ac = new AbortController();
      let n = 0;
      setCheckpointHook(() => {
        if (++n === k) ac.abort();
      });
      let done: { close(): Promise<void> } | void = undefined;
      let error: unknown;
      try {
        done = await op(s, ac.signal);
      } catch (err) {
        error = err;
      }
      setCheckpointHook(undefined);
      if (error === undefined) {
        await done?.close();
        expect(await leftovers(s, process.pid), `${name}: completed, then closed`).to.deep.equal([]);
        return k;
      }
      expect((error as { code?: string }).code, `${name}: aborted at checkpoint ${k}: ${(error as Error).message}`).to.equal('ABORT_ERR');
      expect(await leftovers(s, process.pid), `${name}: aborted at checkpoint ${k}`).to.deep.equal([]);
      expect(openFds(), `${name}: fds after an abort at checkpoint ${k}`).to.deep.equal(fds);
    }
  }

  const roots: Array<[string, RootOptions]> = [
    ['root(): kernel, tmpfs overlay, data partition', { driver: 'kernel', writableTmpfs: true, data: [{ partition: 'data', path: '/data' }] }],
    ['root(): FUSE with fuse-overlayfs', { driver: 'fuse', writableTmpfs: true }],
  ];
  for (const [name, options] of roots) {
    it(`${name}: aborted at each of its checkpoints`, async () => {
      const points = await abortEverywhere(name, async (s, signal) => {
        const img = await init(s.sif);
        try {
          const r = await root(img, s.target('root'), { ...options, signal });
          return { close: async () => (await r.close(), await img.close()) };
        } catch (err) {
          await img.close();
          throw err;
        }
      });
      expect(points).to.be.greaterThan(5);
    });
  }

  for (const driver of ['kernel', 'fuse'] as const) {
    it(`mountImage() (${driver} driver): aborted at each of its checkpoints`, async () => {
      const points = await abortEverywhere(`mountImage ${driver}`, async (s, signal) => {
        const img = await init(s.sif);
        try {
          const m = await mountImage(img, s.target('one'), { driver, signal });
          return { close: async () => (await m.close(), await img.close()) };
        } catch (err) {
          await img.close();
          throw err;
        }
      });
      expect(points).to.be.greaterThan(3);
    });
  }

  it('detachLoop, unmountInNamespace, moveMountIntoNamespace and NamespaceMount.unmount: aborted, they change nothing', async () => {
    const s = scene();
    const dev = await attachLoop(s.sif, { readOnly: true });
    try {
      const ac = new AbortController();
      ac.abort();
      expect(await codeOf(detachLoop(dev.path, { signal: ac.signal }))).to.equal('ABORT_ERR');
      expect(boundLoops().map((l) => l.name)).to.include(path.basename(dev.path));
      const holder = await startNamespaceHolder(['-m', '--propagation', 'private']);
      try {
        const t = s.target('ns');
        const m = await mountInNamespace({ pid: holder.pid! }, s.sif, t, { fstype: 'squashfs', offset: testImages().sifParts.squashfs.offset, sizeLimit: testImages().sifParts.squashfs.size });
        expect(await codeOf(unmountInNamespace({ pid: holder.pid! }, t, 0, { signal: ac.signal }))).to.equal('ABORT_ERR');
        expect(await codeOf(m.unmount({ signal: ac.signal }))).to.equal('ABORT_ERR');
        expect(findMounts(await readMountInfo(holder.pid!), { mountPoint: t })).to.have.length(1);
        const fd = await native((b) => b.openTree(-1, testImages().tree, 1 /* OPEN_TREE_CLONE */));
        try {
          expect(await codeOf(moveMountIntoNamespace({ pid: holder.pid! }, fd, s.target('moved'), { signal: ac.signal }))).to.equal('ABORT_ERR');
        } finally {
          await closeFd(fd);
        }
        expect(findMounts(await readMountInfo(holder.pid!), { mountPoint: path.join(s.dir, 'moved') })).to.deep.equal([]);
        await m.unmount();
      } finally {
        await stopHolder(holder);
      }
    } finally {
      await dev.close();
    }
  });

  it('mount() and bindMount(): aborted at each of their checkpoints', async () => {
    const m = await abortEverywhere('mount', async (s, signal) => {
      const t = s.target('tmpfs');
      await mount('tmpfs', t, 'tmpfs', 0, 'size=1m', { signal });
      return { close: () => umount(t) };
    });
    expect(m).to.be.greaterThan(2);
    const b = await abortEverywhere('bindMount', async (s, signal) => {
      const t = s.target('bind');
      await bindMount(testImages().tree, t, { signal });
      return { close: () => umount(t) };
    });
    expect(b).to.be.greaterThan(3);
  });
});

// Keeps listMountRecords in use for readers of this file: records are what cleanup() reads.
void listMountRecords;
