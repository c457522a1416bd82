// The leak check (test/support/leaks.ts) beside another process that mounts FUSE images on the
// same machine: a process outside this run's process tree (started through a shell that exits,
// in its own session, with its own cwd and environment) keeps a squashfuse_ll mount and a loop
// device and mounts and unmounts another image in a loop. Meanwhile this run leaves a
// persistent squashfuse_ll of its own behind (its process exited, so the helper was
// re-parented, with the library's fixed environment). The check must find and clean up ours,
// and leave every part of the other process's work alone.
import { expect } from 'chai';
import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { findMountRecord } from '../../../lib/drivers/mount-record';
import { MS_NODEV, MS_NOSUID, MS_RDONLY } from '../../../lib/mount';
import { fixture } from '../../support/fixtures';
import { running } from '../../support/forgery';
import { testRun } from '../../support/hooks';
import { mountDir } from '../../support/images';
import { distLib, eventually, requireKernel } from '../../support/kernel';
import { boundLoops, checkLeaks, mountPoints, ownership, parseStat, processTable, readMarks, registerMountPoint, RUN_ENV, snapshotLeaks } from '../../support/leaks';
import { skip } from '../../support/skip';

const RO = MS_RDONLY | MS_NOSUID | MS_NODEV;
const SYSTEM_PATH = '/usr/sbin:/usr/bin:/sbin:/bin';

/** ppid chains from `ps`, not from the leak check's own reading of /proc. */
function psAncestors(pid: number): number[] {
  const ppid = new Map(
    execFileSync('ps', ['-e', '-o', 'pid=,ppid='], { encoding: 'utf8' })
      .trim()
      .split('\n')
      .map((l) => l.trim().split(/\s+/).map(Number) as [number, number]),
  );
  const out: number[] = [];
  for (let p = ppid.get(pid); p !== undefined && p > 0 && !out.includes(p); p = ppid.get(p)) out.push(p);
  return out;
}

function startTime(pid: number): number {
  return parseStat(fs.readFileSync(`/proc/${pid}/stat`, 'utf8')).startTime;
}

interface Foreign {
  dir: string;
  /** The shell that mounts and unmounts in a loop. */
  looper: number;
  /** The long-lived squashfuse_ll (0 until it wrote its pid) and its mount point. */
  helper: number;
  mount: string;
  /** Its loop device (/dev/loopN; '' until known). */
  loop: string;
  /** A file the other process wrote, trimmed. */
  read(name: string): string;
  /** How many mount + unmount cycles it has completed. */
  cycles(): number;
}

/**
 * Another process's work, outside our tree: `sh -c '... &'` exits at once, so the setsid'd
 * shell it started is re-parented; it runs with cwd /, PATH only, in a directory outside
 * testTmp.
 */
function startForeign(): Foreign {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'imgmount-foreign-'));
  for (const d of ['a', 'b']) fs.mkdirSync(path.join(dir, d));
  fs.copyFileSync(fixture('sq-gzip.sqfs'), path.join(dir, 'img.sqfs'));
  const script = [
    'cd /',
    `d=${dir}`,
    'losetup -r -f --show "$d/img.sqfs" > "$d/loop"',
    'squashfuse_ll -f "$d/img.sqfs" "$d/a" </dev/null >/dev/null 2>&1 & echo $! > "$d/helper"',
    'n=0',
    'while [ ! -e "$d/stop" ]; do',
    '  squashfuse_ll "$d/img.sqfs" "$d/b" && fusermount3 -u "$d/b" && n=$((n+1)) && echo $n > "$d/cycles.new" && mv "$d/cycles.new" "$d/cycles"',
    'done',
  ].join('\n');
  fs.writeFileSync(path.join(dir, 'run.sh'), script);
  const r = spawnSync('sh', ['-c', `setsid sh ${dir}/run.sh </dev/null >/dev/null 2>&1 & echo $!`], { cwd: '/', env: { PATH: SYSTEM_PATH }, encoding: 'utf8' });
  expect(r.status, r.stderr).to.equal(0);
  const read = (name: string) => fs.readFileSync(path.join(dir, name), 'utf8').trim();
  return {
    dir,
    looper: Number(r.stdout.trim()),
    helper: 0,
    mount: path.join(dir, 'a'),
    loop: '',
    read,
    cycles: () => (fs.existsSync(path.join(dir, 'cycles')) ? Number(read('cycles')) : 0),
  };
}

function stopForeign(f: Foreign): void {
  fs.writeFileSync(path.join(f.dir, 'stop'), '');
  for (const pid of [f.looper, f.helper]) {
    try {
      if (pid > 0) process.kill(pid, 'SIGKILL');
    } catch {
      // gone
    }
  }
  for (const m of [path.join(f.dir, 'a'), path.join(f.dir, 'b')]) if (mountPoints().includes(m)) spawnSync('umount', ['-l', m]);
  // Any daemonised squashfuse_ll of the loop serving b: its mount is gone, it exits by itself.
  if (f.loop) spawnSync('losetup', ['-d', f.loop]);
  if (!mountPoints().some((m) => m.startsWith(`${f.dir}/`))) fs.rmSync(f.dir, { recursive: true, force: true });
}

describe('kernel: the leak check owns only what its run created', function () {
  before(function () {
    requireKernel(this);
    for (const prog of ['squashfuse_ll', 'fusermount3', 'losetup', 'setsid', 'ps'])
      if (spawnSync('sh', ['-c', `command -v ${prog}`], { env: { PATH: SYSTEM_PATH } }).status !== 0) skip(this, `${prog} is not installed (scripts/setup-host.sh installs it)`);
  });

  it('finds and cleans up a re-parented FUSE helper of this run; the helper, mount, loop device and mount loop of a process beside it stay untouched', async function () {
    this.timeout(60_000);
    const before = snapshotLeaks(testRun, { fds: true });
    const foreign = startForeign();
    try {
      // The other process is set up: its helper serves, its loop device is bound, its loop cycles.
      await eventually(() => fs.existsSync(path.join(foreign.dir, 'helper')) && mountPoints().includes(foreign.mount) && foreign.cycles() > 0, 10_000, 'the other process to mount');
      foreign.helper = Number(foreign.read('helper'));
      foreign.loop = foreign.read('loop');
      const helperStart = startTime(foreign.helper);
      expect(fs.readlinkSync(`/proc/${foreign.helper}/exe`)).to.match(/squashfuse_ll$/);
      expect(boundLoops()).to.deep.include({ name: path.basename(foreign.loop), backingFile: path.join(foreign.dir, 'img.sqfs') });
      // It really is outside our tree, and carries no mark of this run.
      for (const pid of [foreign.looper, foreign.helper]) {
        expect(psAncestors(pid), `ancestors of ${pid}`).to.not.include(process.pid);
        expect(ownership(pid, testRun, processTable(), readMarks(pid)), `ownership of ${pid}`).to.equal(null);
      }

      // Ours: a persistent squashfuse_ll from a process that has exited.
      const t = registerMountPoint(mountDir('leak-check-ours'));
      const script = `
        const { FuseDriver } = require(${JSON.stringify(path.join(distLib, 'drivers', 'fuse'))});
        const { kernelMountFunc } = require(${JSON.stringify(path.join(distLib, 'drivers', 'kernel'))});
        (async () => {
          const d = new FuseDriver({ persist: true });
          await d.start({ sessionPath: '', usernsFd: -1, fuseFd: -1 });
          const m = await d.mount({ source: ${JSON.stringify(fixture('sq-gzip.sqfs'))}, target: ${JSON.stringify(t)}, filesystem: 'squashfs',
            flags: ${RO}, offset: 0, size: 0, fsOptions: [] }, kernelMountFunc);
          process.stdout.write(JSON.stringify(m.helpers));
        })().catch((e) => { console.error(e); process.exit(1); });`;
      const r = spawnSync(process.execPath, ['-e', script], { env: process.env, encoding: 'utf8', timeout: 20_000 });
      expect(r.status, r.stderr).to.equal(0);
      const [ours] = JSON.parse(r.stdout) as Array<{ program: string; pid: number }>;
      expect(ours!.program).to.equal('squashfuse_ll');
      expect(running(ours!.pid)).to.equal(true);
      const record = (await findMountRecord(t))!;
      expect(record.helpers.map((h) => h.pid)).to.deep.equal([ours!.pid]);
      // It was re-parented and has the library's fixed environment (and libfuse moves it to /):
      // the files it serves, open and named, say it is ours.
      expect(psAncestors(ours!.pid)).to.not.include(process.pid);
      const marks = readMarks(ours!.pid);
      expect(marks.environ!.some((e) => e.startsWith(`${RUN_ENV}=`))).to.equal(false);
      expect(ownership(ours!.pid, testRun, processTable(), { ...marks, cwd: '/' }), JSON.stringify(marks)).to.equal('open file');

      const cyclesBefore = foreign.cycles();
      // No settling: what we left stays until cleaned up (and another run's name-based check,
      // as main had, gets no extra time to kill our helper first).
      const report = await checkLeaks(testRun, before, { settleMs: 0 });

      expect(report).to.include(`process ${ours!.pid} squashfuse_ll of this run still running (`);
      expect(report).to.include(`mount left at ${t}`);
      expect(report).to.include('left in the state dir');
      expect(report).to.not.include(foreign.dir);
      for (const pid of [foreign.looper, foreign.helper]) expect(report).to.not.match(new RegExp(`process ${pid} `));
      // Ours is gone, and its mount, record and session directory with it.
      expect(running(ours!.pid)).to.equal(false);
      expect(mountPoints()).to.not.include(t);
      expect(await findMountRecord(t)).to.equal(undefined);
      expect(fs.existsSync(record.sessionDir!)).to.equal(false);
      // Theirs is untouched: same helper (pid and start time), its mount, its loop device, and
      // its loop keeps mounting and unmounting.
      expect(running(foreign.helper)).to.equal(true);
      expect(startTime(foreign.helper)).to.equal(helperStart);
      expect(running(foreign.looper)).to.equal(true);
      expect(mountPoints()).to.include(foreign.mount);
      expect(fs.readFileSync(path.join(foreign.mount, 'etc/hello.txt'), 'utf8')).to.equal('hello from imgmount\n');
      expect(boundLoops()).to.deep.include({ name: path.basename(foreign.loop), backingFile: path.join(foreign.dir, 'img.sqfs') });
      await eventually(() => foreign.cycles() > cyclesBefore + 2, 10_000, 'the other process to keep mounting');
    } finally {
      stopForeign(foreign);
    }
  });
});
