// The addon's blocking calls run on threads of its own (native/work-pool.cc): SCHED_BATCH, so
// waking one does not preempt the JS thread; apart from libuv's pool, so a call blocked in the
// kernel holds up none of the process's fs work; and an environment that goes away with a
// call in flight waits for it, then goes.
import { expect } from 'chai';
import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Worker } from 'node:worker_threads';
import { binding, nativeBuildDir } from '../../../lib/native/binding';
import { testTmp } from '../../support/hooks';

const SCHED_BATCH = 3;

/** [name, scheduling policy] of each thread of this process. */
function threads(): Array<[string, number]> {
  return fs.readdirSync('/proc/self/task').map((tid) => {
    const comm = fs.readFileSync(`/proc/self/task/${tid}/comm`, 'utf8').trim();
    const stat = fs.readFileSync(`/proc/self/task/${tid}/stat`, 'utf8');
    // Fields after "pid (comm) ": state is field 3, policy field 41.
    const policy = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[41 - 3]);
    return [comm, policy];
  });
}

/** Per thread of the pool: [voluntary context switches (sleeps), CPU time in ns]. */
function poolThreads(): Map<string, [number, number]> {
  const out = new Map<string, [number, number]>();
  for (const tid of fs.readdirSync('/proc/self/task')) {
    try {
      if (fs.readFileSync(`/proc/self/task/${tid}/comm`, 'utf8').trim() !== 'imgmount-work') continue;
      const status = fs.readFileSync(`/proc/self/task/${tid}/status`, 'utf8');
      const cpu = Number(fs.readFileSync(`/proc/self/task/${tid}/schedstat`, 'utf8').split(' ')[0]);
      out.set(tid, [Number(/^voluntary_ctxt_switches:\s*(\d+)/m.exec(status)![1]), cpu]);
    } catch {
      // A thread that ended meanwhile.
    }
  }
  return out;
}

/** What the pool's threads did between two poolThreads() readings: [sleeps, CPU ns]. */
function poolDelta(before: Map<string, [number, number]>, after: Map<string, [number, number]>): [number, number] {
  let sleeps = 0;
  let cpu = 0;
  for (const [tid, [s, c]] of after) {
    const [s0, c0] = before.get(tid) ?? [0, 0];
    sleeps += s - s0;
    cpu += c - c0;
  }
  return [sleeps, cpu];
}

const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** A FIFO whose readers block in open(2) until released: a call stuck in the kernel, on demand. */
function fifo(name: string): { path: string; release: () => void } {
  const p = path.join(testTmp, name);
  execFileSync('mkfifo', ['-m', '0600', p]);
  return {
    path: p,
    // A writer opens (the blocked readers' open returns), writes one byte and closes (EOF).
    release: () => {
      const fd = fs.openSync(p, fs.constants.O_WRONLY | fs.constants.O_NONBLOCK);
      fs.writeSync(fd, 'x');
      fs.closeSync(fd);
    },
  };
}

function within<T>(ms: number, what: string, p: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what}: not done after ${ms} ms`)), ms)));
  return Promise.race([p, late]).finally(() => clearTimeout(timer));
}

describe('native: the addon work pool', () => {
  it("runs calls on its own threads, named imgmount-work, with SCHED_BATCH", async () => {
    const [text] = await binding().readTextFiles(['/proc/thread-self/comm'], 64);
    // The file read is the calling thread's own: the call ran on a thread of ours.
    expect(text).to.equal('imgmount-work\n');
    const ours = threads().filter(([name]) => name === 'imgmount-work');
    // Four, and more only while calls are stuck on all of them (see below).
    expect(ours.length).to.be.within(1, 16);
    for (const [, policy] of ours) expect(policy).to.equal(SCHED_BATCH);
    // Node's own threads keep the default policy.
    expect(threads().filter(([name]) => name !== 'imgmount-work').every(([, policy]) => policy === 0)).to.equal(true);
  });

  it('a call right after another is taken by a thread still awake (no wake-up); an idle pool sleeps and uses no CPU', async () => {
    const b = binding();
    for (let i = 0; i < 50; i++) await b.readTextFiles([], 16);
    const calls = 200;
    const before = poolThreads();
    for (let i = 0; i < calls; i++) await b.readTextFiles([], 16);
    const [sleeps] = poolDelta(before, poolThreads());
    // Asleep between calls, a thread sleeps once per call (200); awake, it takes the next one
    // as it comes. The margin is for a loaded machine, where the JS thread may lose its CPU
    // for longer than the pool waits awake.
    expect(sleeps, `the pool's threads slept ${sleeps} times in ${calls} back-to-back calls`).to.be.below(calls / 2);
    // Waiting awake is bounded (0.25 ms): then every thread sleeps.
    await pause(20);
    const idle = poolThreads();
    await pause(200);
    const [, cpu] = poolDelta(idle, poolThreads());
    expect(cpu, `the idle pool used ${cpu} ns of CPU in 200 ms`).to.be.below(2e6);
  });

  it("the JS thread polls while a call is in flight (no sleep per call), for at most 0.5 ms: a stuck call costs it no CPU", async () => {
    const b = binding();
    const main = `/proc/self/task/${process.pid}`;
    const sleeps = (): number => Number(/^voluntary_ctxt_switches:\s*(\d+)/m.exec(fs.readFileSync(`${main}/status`, 'utf8'))![1]);
    const cpu = (): number => Number(fs.readFileSync(`${main}/schedstat`, 'utf8').split(' ')[0]);
    // Calls that do a little work (a read of a small file): asleep in epoll_wait meanwhile, the
    // JS thread sleeps once per call (200 measured); polling, it sees each completion awake.
    for (let i = 0; i < 50; i++) await b.readTextFiles(['/proc/self/stat'], 4096);
    const calls = 200;
    const before = sleeps();
    for (let i = 0; i < calls; i++) await b.readTextFiles(['/proc/self/stat'], 4096);
    const slept = sleeps() - before;
    // The margin is for a loaded machine (the JS thread may wait on a lock held by a descheduled thread).
    expect(slept, `the JS thread slept ${slept} times in ${calls} back-to-back calls`).to.be.below(calls / 2);
    // A call that waits (a FIFO no one writes): the loop polls for 0.5 ms, then sleeps.
    const stuck = fifo('pool-poll.fifo');
    const read = b.readTextFiles([stuck.path], 16);
    try {
      await pause(20);
      const start = cpu();
      await pause(200);
      const used = cpu() - start;
      expect(used, `the JS thread used ${used} ns of CPU in 200 ms beside a stuck call`).to.be.below(20e6);
    } finally {
      stuck.release();
    }
    expect(await read).to.deep.equal(['x']);
  });

  it("calls blocked in the kernel hold none of libuv's threads: fs work goes on", async () => {
    const stuck = fifo('pool-stuck.fifo');
    // Four at once: as many threads as libuv's pool has, all of which they would have held.
    const reads = Array.from({ length: 4 }, () => binding().readTextFiles([stuck.path], 16));
    let released = false;
    try {
      await new Promise((r) => setTimeout(r, 100));
      const files = await within(5000, 'fs calls beside four blocked addon calls', Promise.all(Array.from({ length: 8 }, () => fs.promises.readFile('/proc/self/stat', 'utf8'))));
      expect(files.every((t) => /^\d+ \(/.test(t))).to.equal(true);
      stuck.release();
      released = true;
      const got = (await within(5000, 'the blocked calls, released', Promise.all(reads))).map((r) => r[0]);
      // One reader gets the byte, the others EOF: every call came back.
      expect(got.join('')).to.equal('x');
    } finally {
      if (!released) stuck.release();
      await Promise.allSettled(reads);
    }
  });

  it('calls stuck on every thread (past 250 ms) do not stop the next one: it gets a thread of its own', async function () {
    this.timeout(20_000);
    const stuck = fifo('pool-all-stuck.fifo');
    const workers = (): number => threads().filter(([name]) => name === 'imgmount-work').length;
    await binding().readTextFiles([], 16);
    // One more than the pool has threads (four, unless an earlier test grew it): every thread
    // holds one, one waits behind them.
    const reads = Array.from({ length: Math.max(4, workers()) + 1 }, () => binding().readTextFiles([stuck.path], 16));
    let released = false;
    try {
      await new Promise((r) => setTimeout(r, 400));
      const before = workers();
      const [text] = await within(5000, 'a call behind four stuck ones', binding().readTextFiles(['/proc/thread-self/comm'], 64));
      expect(text).to.equal('imgmount-work\n');
      const after = workers();
      expect(after, 'one thread more for the calls behind the stuck ones').to.be.greaterThan(before);
      expect(after).to.be.at.most(16);
      stuck.release();
      released = true;
      expect((await within(5000, 'the stuck calls, released', Promise.all(reads))).map((r) => r[0]).join('')).to.equal('x');
    } finally {
      if (!released) stuck.release();
      await Promise.allSettled(reads);
    }
  });

  it('two copies of the addon in one process (two installs of imgmount) each have a pool of their own', async function () {
    this.timeout(20_000);
    // A copy under another name is another module to the dynamic linker, as a second install is.
    // Sharing anything process-wide (a GNU_UNIQUE static) would put both on one queue: with its
    // four threads blocked by the first copy's calls, the second copy's call would never run.
    const copy = path.join(testTmp, 'imgmount-copy.node');
    fs.copyFileSync(process.env.IMGMOUNT_NATIVE_PATH ?? path.join(nativeBuildDir(), 'imgmount.node'), copy);
    const mod = { exports: {} as { readTextFiles: (paths: string[], max: number) => Promise<Array<string | number>> } };
    process.dlopen(mod, copy);
    const stuck = fifo('pool-two-copies.fifo');
    const reads = Array.from({ length: 4 }, () => binding().readTextFiles([stuck.path], 16));
    let released = false;
    try {
      await new Promise((r) => setTimeout(r, 100));
      const [own] = await within(5000, "the copy's call beside four blocked calls of the first", mod.exports.readTextFiles(['/proc/thread-self/comm'], 64));
      expect(own).to.equal('imgmount-work\n');
      stuck.release();
      released = true;
      expect((await Promise.all(reads)).map((r) => r[0]).join('')).to.equal('x');
    } finally {
      if (!released) stuck.release();
      await Promise.allSettled(reads);
    }
  });

  it('an environment ending with a call in flight waits for it, then goes cleanly', async () => {
    const stuck = fifo('pool-worker.fifo');
    const script = `
      const { parentPort } = require('node:worker_threads');
      const b = require(${JSON.stringify(path.join(__dirname, '..', '..', '..', 'lib', 'native', 'binding'))}).binding();
      b.readTextFiles([${JSON.stringify(stuck.path)}], 16).then((r) => parentPort.postMessage({ done: r }));
      parentPort.postMessage('queued');`;
    const worker = new Worker(script, { eval: true });
    let exitCode: number | undefined;
    const exited = new Promise<number>((resolve) => worker.once('exit', (code) => resolve((exitCode = code))));
    let released = false;
    try {
      await new Promise<void>((resolve, reject) => {
        worker.once('error', reject);
        worker.once('message', () => resolve());
      });
      await new Promise((r) => setTimeout(r, 100));
      const terminating = worker.terminate();
      await new Promise((r) => setTimeout(r, 300));
      // Still waiting on the call: the environment cannot go before it.
      expect(exitCode).to.equal(undefined);
      stuck.release();
      released = true;
      expect(await within(5000, 'the worker, once its call was released', terminating)).to.equal(1);
      expect(await exited).to.equal(1);
    } finally {
      if (!released) stuck.release();
      await worker.terminate();
    }
  });

  it('the addon stays loaded once the last environment that loaded it is gone: its threads outlive them', function () {
    this.timeout(30_000);
    // Only worker threads load the addon here. When the last of them exits, Node dlclose()s it;
    // the pool's threads (one still spinning after its last call, the monitor on a timed wait)
    // would then run unmapped code (SIGSEGV) but for -z nodelete in binding.gyp.
    const binding = path.join(__dirname, '..', '..', '..', 'lib', 'native', 'binding');
    const script = `
      const { Worker } = require('node:worker_threads');
      const code = \`
        const { parentPort } = require('node:worker_threads');
        const b = require(\${JSON.stringify(${JSON.stringify(binding)})}).binding();
        (async () => { for (let i = 0; i < 50; i++) await b.readTextFiles(['/proc/self/stat'], 64); parentPort.postMessage('done'); })();\`;
      const run = () => new Promise((res, rej) => { const w = new Worker(code, { eval: true }); w.once('message', () => w.terminate().then(res)); w.once('error', rej); });
      Promise.all([run(), run(), run()]).then(() => setTimeout(() => console.log('exited cleanly'), 400));`;
    for (let i = 0; i < 3; i++) {
      const r = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: 20_000 });
      expect({ status: r.status, signal: r.signal, stdout: r.stdout.trim(), stderr: r.stderr.trim() }, `run ${i + 1}`).to.deep.equal({
        status: 0,
        signal: null,
        stdout: 'exited cleanly',
        stderr: '',
      });
    }
  });
});
