// What the leak check (test/support/leaks.ts) counts as its run's: the predicates on made-up
// process tables and marks, then real processes: a child, orphans that keep a mark of the run
// (cwd, environment), and an orphan that carries none, which must never be touched.
import { expect } from 'chai';
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { running } from '../../support/forgery';
import { testTmp } from '../../support/hooks';
import { repoRoot } from '../../support/paths';
import {
  ancestry,
  checkLeaks,
  isDescendant,
  ownership,
  ownsLoop,
  ownsMount,
  parseStat,
  processTable,
  readMarks,
  registerMountPoint,
  runProcesses,
  RUN_ENV,
  snapshotLeaks,
  within,
  type ProcMarks,
  type TestRun,
} from '../../support/leaks';

const NO_MARKS: ProcMarks = { environ: null, cwd: null, cmdline: null, fds: null };
const table = (edges: Array<[number, number]>) => new Map(edges.map(([pid, ppid]) => [pid, { ppid }]));

describe('leak check: ownership predicates', () => {
  const run = { pid: 100, id: 'imgmount-test-AbC123', tmp: '/tmp/imgmount-test-AbC123' };
  // 1 init, 50 the shell that started mocha (100); 101, 102 below it; 200 someone else's.
  const t = table([[1, 0], [50, 1], [100, 50], [101, 100], [102, 101], [200, 1], [201, 200]]);

  it('parses /proc/PID/stat whatever the comm holds', () => {
    const e = parseStat('4242 (a) b (c) S 17 4242 4242 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 1 0 987654 0 0\n');
    expect(e).to.deep.equal({ pid: 4242, comm: 'a) b (c', state: 'S', ppid: 17, startTime: 987654 });
  });

  it('descendants by the ppid chain: children and grandchildren, not the run itself, its ancestors or strangers', () => {
    expect(isDescendant(101, 100, t)).to.equal(true);
    expect(isDescendant(102, 100, t)).to.equal(true);
    expect(isDescendant(100, 100, t)).to.equal(false);
    expect(isDescendant(50, 100, t)).to.equal(false);
    expect(isDescendant(201, 100, t)).to.equal(false);
    expect(isDescendant(999, 100, t)).to.equal(false); // unknown pid
    expect([...ancestry(102, t)]).to.deep.equal([102, 101, 100, 50, 1]);
  });

  it('a ppid cycle (pids reused while reading /proc) ends the walk', () => {
    const cyclic = table([[10, 11], [11, 10]]);
    expect(isDescendant(10, 100, cyclic)).to.equal(false);
    expect([...ancestry(10, cyclic)]).to.deep.equal([10, 11]);
  });

  it('an orphan is the run\'s by one of its marks, each on its own', () => {
    const own = (m: Partial<ProcMarks>) => ownership(201, run, t, { ...NO_MARKS, ...m });
    expect(own({})).to.equal(null);
    expect(ownership(102, run, t, NO_MARKS)).to.equal('descendant');
    expect(own({ environ: ['PATH=/bin', `${RUN_ENV}=${run.id}`] })).to.equal('environment');
    expect(own({ cwd: `${run.tmp}/cwd` })).to.equal('cwd');
    expect(own({ cwd: run.tmp })).to.equal('cwd');
    expect(own({ cmdline: ['squashfuse_ll', '-f', '-o', 'ro', '/proc/self/fd/3', `${run.tmp}/mnt/a`] })).to.equal('command line');
    expect(own({ cmdline: ['fuse-overlayfs', '-o', `lowerdir=/x:${run.tmp}/state/sessions/s/l0,upperdir=/u`, '/t'] })).to.equal('command line');
    expect(own({ fds: ['/dev/null', 'pipe:[1234]', `${run.tmp}/state/sessions/s/0-squashfuse_ll.log`] })).to.equal('open file');
  });

  it('marks of another run, or paths that only share a prefix, are not ours', () => {
    const own = (m: Partial<ProcMarks>) => ownership(201, run, t, { ...NO_MARKS, ...m });
    expect(own({ environ: [`${RUN_ENV}=imgmount-test-XyZ789`] })).to.equal(null);
    expect(own({ environ: [`X${RUN_ENV}=${run.id}`] })).to.equal(null);
    expect(own({ cwd: `${run.tmp}0/cwd` })).to.equal(null);
    expect(own({ cwd: '/tmp' })).to.equal(null);
    expect(own({ cmdline: ['squashfuse_ll', `${run.tmp}x/img`, `relative${run.tmp}`] })).to.equal(null);
    expect(own({ fds: [`${run.tmp}-other/file`, 'anon_inode:[eventfd]'] })).to.equal(null);
  });

  it('loop devices by backing file under the run\'s temp dir; mounts under it or registered', () => {
    expect(ownsLoop(run, { name: 'loop3', backingFile: `${run.tmp}/images/image.sif` })).to.equal(true);
    expect(ownsLoop(run, { name: 'loop3', backingFile: `${run.tmp}2/images/image.sif` })).to.equal(false);
    expect(ownsLoop(run, { name: 'loop3', backingFile: '/work/shared/fixtures/sif/apptainer/busybox_amd64.sif' })).to.equal(false);
    expect(ownsMount(run, `${run.tmp}/mnt/x`)).to.equal(true);
    expect(ownsMount(run, '/tmp/imgmount-open-Q1/t')).to.equal(false);
    registerMountPoint('/tmp/imgmount-open-Q1/t');
    expect(ownsMount(run, '/tmp/imgmount-open-Q1/t')).to.equal(true);
    expect(within('/a/b', '/a')).to.equal(true);
    expect(within('/a', '/a')).to.equal(true);
    expect(within('/ab', '/a')).to.equal(false);
    expect(within('/a/../b', '/a')).to.equal(false);
  });
});

/** A run of our own inside testTmp (so that the suite's own check still owns what it makes). */
function fakeRun(): TestRun {
  const tmp = fs.mkdtempSync(path.join(fs.realpathSync(testTmp), 'fake-run-'));
  fs.mkdirSync(path.join(tmp, 'state', 'mounts'), { recursive: true });
  fs.mkdirSync(path.join(tmp, 'state', 'sessions'));
  return { pid: process.pid, id: path.basename(tmp), tmp, stateDir: path.join(tmp, 'state') };
}

const CLEAN_ENV = { PATH: '/usr/sbin:/usr/bin:/sbin:/bin' };

/**
 * Starts `sleep` through a shell that exits at once: the sleep is re-parented (to init or the
 * nearest subreaper above us) and is no longer our descendant. Returns its pid.
 */
function orphanSleep(o: { cwd: string; env: NodeJS.ProcessEnv }): number {
  const r = spawnSync('sh', ['-c', 'sleep 600 </dev/null >/dev/null 2>&1 & echo $!'], { cwd: o.cwd, env: o.env, encoding: 'utf8' });
  expect(r.status, r.stderr).to.equal(0);
  return Number(r.stdout.trim());
}

function kill(pid: number): void {
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    // gone
  }
}

describe('leak check: real processes', () => {
  const started: number[] = [];
  afterEach(() => started.splice(0).forEach(kill));

  it('a child is the run\'s (descendant); an orphan by its cwd or its environment; a stranger not at all', () => {
    const run = fakeRun();
    const cwd = path.join(run.tmp, 'cwd');
    fs.mkdirSync(cwd);
    const child = spawn('sleep', ['600'], { stdio: 'ignore', cwd: '/', env: CLEAN_ENV });
    started.push(child.pid!);
    const byCwd = orphanSleep({ cwd, env: CLEAN_ENV });
    const byEnv = orphanSleep({ cwd: '/', env: { ...CLEAN_ENV, [RUN_ENV]: run.id } });
    const stranger = orphanSleep({ cwd: '/', env: CLEAN_ENV });
    started.push(byCwd, byEnv, stranger);
    const t = processTable();
    // The orphans really are orphans: our process is not on their ppid chain.
    for (const pid of [byCwd, byEnv, stranger]) expect([...ancestry(pid, t)]).to.not.include(process.pid);
    expect(readMarks(byCwd).environ).to.not.include(`${RUN_ENV}=${run.id}`);
    const ours = new Map(runProcesses(run, t).map((p) => [p.pid, p.why]));
    expect(ours.get(child.pid!)).to.equal('descendant');
    expect(ours.get(byCwd)).to.equal('cwd');
    expect(ours.get(byEnv)).to.equal('environment');
    expect(ours.has(stranger)).to.equal(false);
    expect(ours.has(process.pid)).to.equal(false);
  });

  it('checkLeaks reports and cleans up what the run left (process, record, session directory), reports fds, and leaves a stranger alone', async () => {
    const run = fakeRun();
    const stranger = orphanSleep({ cwd: '/', env: CLEAN_ENV });
    started.push(stranger);
    const strangerStart = parseStat(fs.readFileSync(`/proc/${stranger}/stat`, 'utf8')).startTime;
    const before = snapshotLeaks(run, { fds: true });
    const byCwd = orphanSleep({ cwd: run.tmp, env: CLEAN_ENV });
    started.push(byCwd);
    fs.writeFileSync(path.join(run.stateDir, 'mounts', 'left.json'), '{}');
    fs.mkdirSync(path.join(run.stateDir, 'sessions', 'left-session', 'upper'), { recursive: true });
    const fd = fs.openSync(path.join(run.tmp, 'open-file'), 'w');
    try {
      const report = await checkLeaks(run, before, { settleMs: 0 });
      expect(report.split('\n  ').sort()).to.deep.equal(
        [
          `process ${byCwd} sleep of this run still running (cwd)`,
          'mount record mounts/left.json left in the state dir',
          'session directory sessions/left-session left in the state dir',
          `fd ${fd} left open (${path.join(run.tmp, 'open-file')})`,
        ].sort(),
      );
      expect(running(byCwd)).to.equal(false);
      expect(fs.readdirSync(path.join(run.stateDir, 'mounts'))).to.deep.equal([]);
      expect(fs.readdirSync(path.join(run.stateDir, 'sessions'))).to.deep.equal([]);
      // The fd is reported, not closed: its owner (here, us) closes it.
      expect(fs.readlinkSync(`/proc/self/fd/${fd}`)).to.equal(path.join(run.tmp, 'open-file'));
      expect(running(stranger)).to.equal(true);
      expect(parseStat(fs.readFileSync(`/proc/${stranger}/stat`, 'utf8')).startTime).to.equal(strangerStart);
    } finally {
      fs.closeSync(fd);
    }
    expect(await checkLeaks(run, before, { settleMs: 0 })).to.equal('');
  });
});

describe('leak check: per spec file, through the root hooks', () => {
  const mochaBin = path.join(repoRoot, 'node_modules', 'mocha', 'bin', 'mocha.js');
  let n = 0;

  /** Runs mocha with the suite's root hooks on spec files (name -> body) in a fresh directory. */
  function runSpecs(files: Record<string, string>): { status: number | null; out: string } {
    const dir = path.join(testTmp, `hooks-${n++}`);
    fs.mkdirSync(dir);
    const paths = Object.entries(files).map(([name, body]) => {
      const p = path.join(dir, name);
      fs.writeFileSync(p, `const fs = require('node:fs'); const path = require('node:path'); const { spawn } = require('node:child_process');\n${body}\n`);
      return p;
    });
    const env: NodeJS.ProcessEnv = { ...process.env };
    delete env.IMGMOUNT_STATE_DIR;
    delete env[RUN_ENV];
    const r = spawnSync(process.execPath, [mochaBin, '--no-config', '--require', path.join(repoRoot, 'dist', 'test', 'support', 'hooks.js'), '--reporter', 'dot', ...paths], {
      env,
      cwd: repoRoot,
      encoding: 'utf8',
    });
    return { status: r.status, out: r.stdout + r.stderr };
  }

  it('a file that opens in before() and closes in after() is clean; one that leaves an fd (opened in before()), a process and a record fails, named, and only it', function () {
    this.timeout(30_000);
    const r = runSpecs({
      // Closed in after(): clean only if the check follows the file's own hooks.
      'a-clean.test.js': `describe('clean', () => {
        let fd; before(() => { fd = fs.openSync('/dev/null', 'r'); }); after(() => fs.closeSync(fd));
        it('works', () => {});
      });`,
      // Opened in before(): seen only if the snapshot precedes the file's own hooks.
      'b-leaky.test.js': `describe('leaky', () => {
        before(() => { fs.openSync(__filename, 'r'); });
        it('leaves things', () => {
          spawn('sleep', ['600'], { stdio: 'ignore', detached: true }).unref();
          const mounts = path.join(process.env.IMGMOUNT_STATE_DIR, 'mounts');
          fs.mkdirSync(mounts, { recursive: true });
          fs.writeFileSync(path.join(mounts, 'forgotten.json'), '{}');
        });
      });`,
      'c-clean.test.js': `describe('clean too', () => { it('works', () => {}); });`,
    });
    expect(r.status, r.out).to.equal(1);
    expect(r.out).to.match(/"after all" hook: leak check: what \S*b-leaky\.test\.js left behind/);
    expect(r.out).to.not.match(/leak check: what \S*(a-clean|c-clean)\.test\.js left behind/);
    expect(r.out).to.match(/fd \d+ left open \(\S*b-leaky\.test\.js\)/);
    expect(r.out).to.match(/process \d+ sleep of this run still running \(descendant\)/);
    expect(r.out).to.include('mount record mounts/forgotten.json left in the state dir');
    // Cleaned up before the failure: the sleep was killed.
    const pid = Number(/process (\d+) sleep/.exec(r.out)![1]);
    expect(running(pid)).to.equal(false);
  });
});
