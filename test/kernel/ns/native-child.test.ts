// Programs started by posix_spawn off the JS thread (lib/ns/native-child.ts): what the child
// gets (exactly the fds asked, stdin /dev/null, default signals, none blocked or ignored, its
// own session, exactly the environment), how its exit is reported (code or signal, 'exit' then
// 'close', reaped: no zombie), signals through its pidfd, and a failed exec as an error with
// nothing left running.
import { expect } from 'chai';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { SystemError } from '../../../lib/errors';
import { injectFaults } from '../../../lib/native/faults';
import { text } from 'node:stream/consumers';
import { spawnNative, type NativeChild } from '../../../lib/ns/native-child';
import { trackExit } from '../../../lib/util/child-exit';
import { rejection } from '../../support/expect-error';
import { testTmp } from '../../support/hooks';
import { requireKernel, startChild } from '../../support/kernel';
import { mountDir, testImages } from '../../support/images';
import { mountPoints, registerMountPoint } from '../../support/leaks';
import { repoRoot } from '../../support/paths';
import { execFileSync } from 'node:child_process';

const SH = '/bin/sh';

function exitOf(child: NativeChild): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  return trackExit(child as never).closed;
}

function isZombieOrGone(pid: number): boolean {
  try {
    return fs.readFileSync(`/proc/${pid}/stat`, 'utf8').includes(') Z ');
  } catch {
    return true;
  }
}

describe('kernel: programs started without forking Node (posix_spawn + pidfd)', function () {
  before(function () {
    requireKernel(this);
  });

  it('reports the exit code, then reaps it (no zombie is left)', async () => {
    const child = await spawnNative(SH, ['-c', 'exit 7'], { fds: [null, null, null], env: { PATH: '/usr/bin:/bin' }, setsid: false });
    const e = await exitOf(child);
    expect(e).to.deep.equal({ code: 7, signal: null });
    expect(child.exitCode).to.equal(7);
    expect(fs.existsSync(`/proc/${child.pid}`), 'reaped').to.equal(false);
  });

  it('kill() signals it through its pidfd; after the exit kill() is false', async () => {
    const child = await spawnNative(SH, ['-c', 'exec sleep 30'], { fds: [null, null, null], env: {}, setsid: true });
    expect(child.kill('SIGTERM')).to.equal(true);
    expect(await exitOf(child)).to.deep.equal({ code: null, signal: 'SIGTERM' });
    expect(child.kill('SIGKILL')).to.equal(false);
  });

  it('the child gets exactly the fds asked (stdin /dev/null), default signals, none blocked, its own session and exactly the environment', async () => {
    const out = path.join(testTmp, 'native-child.out');
    const fd = fs.openSync(out, 'w');
    const extra = fs.openSync(path.join(testTmp, 'native-child.extra'), 'w');
    try {
      // Reports: its fds, stdin's target, sid == pid, env. (Its signal masks are read below from a
      // program of its own: a shell blocks every signal around each fork, so a child reading the
      // shell's masks can catch that moment.)
      // (ls -m, a simple command: a pipeline's pipes would be the shell's own fds while ls runs.)
      const script = 'ls -m /proc/$$/fd; readlink /proc/$$/fd/0; ' +
        'set -- $(cut -d" " -f6 /proc/$$/stat); [ "$1" = "$$" ] && echo session-leader; env | sort; echo extra >&3';
      const child = await spawnNative(SH, ['-c', script], { fds: [null, fd, fd, extra], env: { A: '1', PATH: '/usr/bin:/bin' }, setsid: true });
      expect(await exitOf(child)).to.deep.equal({ code: 0, signal: null });
    } finally {
      fs.closeSync(fd);
      fs.closeSync(extra);
    }
    const lines = fs.readFileSync(out, 'utf8').trim().split('\n');
    // 0-3, ours, and nothing else: the shell's own fds as ls finds them.
    expect(lines[0]!.trim().split(', '), lines[0]).to.deep.equal(['0', '1', '2', '3']);
    expect(lines[1]).to.equal('/dev/null');
    expect(lines[2]).to.equal('session-leader');
    expect(lines.slice(3).filter((l) => !l.startsWith('PWD=') && !l.startsWith('SHLVL=') && !l.startsWith('_='))).to.deep.equal(['A=1', 'PATH=/usr/bin:/bin']);
    expect(fs.readFileSync(path.join(testTmp, 'native-child.extra'), 'utf8')).to.equal('extra\n');

    // Its signals, as the program finds them at its start (pool threads block every signal).
    const masks = path.join(testTmp, 'native-child.masks');
    const mfd = fs.openSync(masks, 'w');
    try {
      const grep = await spawnNative('/usr/bin/grep', ['-E', '^(SigBlk|SigIgn)', '/proc/self/status'], { fds: [null, mfd, mfd], env: {}, setsid: true });
      expect(await exitOf(grep)).to.deep.equal({ code: 0, signal: null });
    } finally {
      fs.closeSync(mfd);
    }
    const [blocked, ignoredLine] = fs.readFileSync(masks, 'utf8').trim().split('\n');
    expect(blocked).to.match(/^SigBlk:\s+0+$/);
    // Node ignores SIGPIPE; the child must not ignore it, nor any other standard signal (glibc's
    // posix_spawn leaves only its own two internal ones, 32 and 33, ignored until the program's
    // libc takes them over).
    const ignored = BigInt(`0x${ignoredLine!.split(/\s+/)[1]}`);
    expect(ignored & 0x7fffffffn, ignoredLine).to.equal(0n); // bit n-1 is signal n
  });

  it("pipes: each asked child fd's output comes back on the event loop; 'close' comes after the exit and their end", async () => {
    const child = await spawnNative(SH, ['-c', 'echo out; echo err >&2; sleep 0.1; printf result >&3'], { fds: [null, null, null, null], env: {}, setsid: false, pipes: [1, 2, 3] });
    const outputs = Promise.all([1, 2, 3].map((fd) => text(child.output(fd)!)));
    let exited = false;
    child.once('exit', () => (exited = true));
    const closed = await exitOf(child);
    expect(exited, "'exit' came first").to.equal(true);
    expect(closed).to.deep.equal({ code: 0, signal: null });
    expect(await outputs).to.deep.equal(['out\n', 'err\n', 'result']);
    expect(child.output(0), 'only the fds asked').to.equal(undefined);
  });

  it('pipes: only a child fd left to /dev/null (null) can be a pipe', async () => {
    const fd = fs.openSync(path.join(testTmp, 'native-child-pipe-clash'), 'w');
    try {
      const err = await rejection(spawnNative(SH, ['-c', 'true'], { fds: [null, fd, null], env: {}, setsid: false, pipes: [1] }), TypeError);
      expect(err.message).to.match(/pipes must name child fds whose fds entry is -1/);
    } finally {
      fs.closeSync(fd);
    }
  });

  it('pidfd_open failing once it runs: killed by default; with waitUnwatched waited for, its outcome kept', async () => {
    const marker = path.join(testTmp, 'native-child-unwatched');
    const script = `sleep 0.2; echo done > ${marker}; printf ok >&3; exit 3`;
    injectFaults([{ step: 'pidfd_open', errno: 16 }]);
    try {
      const err = await rejection(spawnNative(SH, ['-c', script], { fds: [null, null, null, null], env: {}, setsid: false, pipes: [3] }), SystemError);
      expect(err.syscall).to.equal('pidfd_open');
      expect(err.code).to.equal('EBUSY');
    } finally {
      injectFaults(null);
    }
    await new Promise((r) => setTimeout(r, 300));
    expect(fs.existsSync(marker), 'the unwatched program was stopped before it went on').to.equal(false);
    injectFaults([{ step: 'pidfd_open', errno: 16 }]);
    let child: NativeChild;
    try {
      child = await spawnNative(SH, ['-c', script], { fds: [null, null, null, null], env: {}, setsid: false, pipes: [3], waitUnwatched: true });
    } finally {
      injectFaults(null);
    }
    expect(fs.readFileSync(marker, 'utf8'), 'it ran to its end').to.equal('done\n');
    const output = text(child.output(3)!);
    expect(await exitOf(child)).to.deep.equal({ code: 3, signal: null });
    expect(await output).to.equal('ok');
    expect(child.kill('SIGKILL'), 'nothing to signal: it is gone').to.equal(false);
    expect(fs.existsSync(`/proc/${child.pid}`), 'reaped').to.equal(false);
  });

  it('a program that cannot be executed is a SystemError (posix_spawn, ENOENT), nothing left running', async () => {
    const err = await rejection(spawnNative('/nonexistent/program', [], { fds: [null, null, null], env: {}, setsid: true }), SystemError);
    expect(err.syscall).to.equal('posix_spawn');
    expect(err.code).to.equal('ENOENT');
  });

  it('where pidfd_open is missing (seccomp ENOSYS, as before Linux 5.3), FUSE helpers start by child_process instead', async function () {
    this.timeout(30_000);
    const deny = path.join(testTmp, 'deny-syscalls');
    if (!fs.existsSync(deny)) execFileSync('cc', ['-O2', '-o', deny, path.join(repoRoot, 'test', 'support', 'deny-syscalls.c')]);
    const target = registerMountPoint(mountDir('native-child-no-pidfd'));
    const child = startChild({ op: 'fuse-root', image: testImages().sif, target }, [deny, '--pidfd-open', '--']);
    const r = await child.next();
    try {
      expect(r.error, String(r.error)).to.equal(undefined);
      expect(r.nativeSpawn, 'the native spawn found no pidfd_open').to.equal(false);
      expect(r.helpers).to.have.length(1);
      expect(fs.readdirSync(target).length, 'the root is served').to.be.greaterThan(0);
    } finally {
      const code = await child.finish();
      const last = await child.next().catch((e: Error) => ({ next: e.message }));
      expect(code, `the child's last word: ${JSON.stringify(last)}`).to.equal(0);
    }
    expect(mountPoints()).to.not.include(target);
  });

  it('unref() lets Node exit while it runs; its exit still arrives while Node runs', async () => {
    const child = await spawnNative(SH, ['-c', 'exec sleep 0.2'], { fds: [null, null, null], env: {}, setsid: true });
    child.unref();
    const e = await exitOf(child);
    expect(e.code).to.equal(0);
    expect(isZombieOrGone(child.pid)).to.equal(true);
  });
});
