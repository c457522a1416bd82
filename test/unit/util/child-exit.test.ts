// A child's exit captured at spawn (lib/util/child-exit.ts): an exit that happens before anyone
// waits is not missed, one tracker per child, `closed` waits for output kept in PassThrough
// streams, and readOutput returns the whole of stdout with the exit.
import { expect } from 'chai';
import { spawn, type ChildProcess } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { PassThrough } from 'node:stream';
import { readOutput, trackExit } from '../../../lib/util/child-exit';

const tick = () => new Promise((r) => setImmediate(r));

/** A stand-in ChildProcess whose events and streams the test drives. */
function fakeChild(stdout: PassThrough | null, stderr: PassThrough | null = null): ChildProcess {
  return Object.assign(new EventEmitter(), { stdout, stderr }) as unknown as ChildProcess;
}

describe('util/child-exit: exits captured when the child is spawned', () => {
  it('exited: the code of a child that exited before anyone waited', async () => {
    const child = spawn('/bin/sh', ['-c', 'exit 3'], { stdio: 'ignore' });
    const t = trackExit(child);
    // Long after the exit (the 'close' event has fired too).
    await new Promise((r) => child.once('close', r));
    await tick();
    expect(await t.exited).to.deep.equal({ code: 3, signal: null });
    expect(await t.closed).to.deep.equal({ code: 3, signal: null });
  });

  it('a signal: code null and the signal name', async () => {
    const child = spawn('/bin/sh', ['-c', 'exec sleep 30'], { stdio: 'ignore' });
    const t = trackExit(child);
    child.kill('SIGTERM');
    expect(await t.exited).to.deep.equal({ code: null, signal: 'SIGTERM' });
  });

  it('one tracker per child', () => {
    const child = fakeChild(null);
    expect(trackExit(child)).to.equal(trackExit(child));
    expect(trackExit(fakeChild(null))).to.not.equal(trackExit(child));
  });

  it("closed waits for 'close' and for PassThrough output streams to be finished, not for someone to read them", async () => {
    const out = new PassThrough();
    const err = new PassThrough();
    const child = fakeChild(out, err);
    const t = trackExit(child);
    let closed: unknown;
    void t.closed.then((e) => (closed = e));
    let exited: unknown;
    void t.exited.then((e) => (exited = e));
    child.emit('exit', 0, null);
    await tick();
    expect(exited).to.deep.equal({ code: 0, signal: null });
    child.emit('close', 0, null);
    out.end('output nobody read');
    await tick();
    expect(closed, 'stderr is still open').to.equal(undefined);
    err.end();
    await tick();
    expect(closed).to.deep.equal({ code: 0, signal: null });
  });

  it('closed: a PassThrough destroyed with an error does not hold it up', async () => {
    const out = new PassThrough();
    const child = fakeChild(out);
    const t = trackExit(child);
    child.emit('exit', 1, null);
    child.emit('close', 1, null);
    out.destroy(new Error('broken'));
    expect(await t.closed).to.deep.equal({ code: 1, signal: null });
  });

  it('readOutput: all of stdout (1 MiB here) with the exit code', async () => {
    const child = spawn('/bin/sh', ['-c', 'head -c 1048576 /dev/zero | tr "\\0" x; printf END; exit 2'], { stdio: ['ignore', 'pipe', 'ignore'] });
    const r = await readOutput(child);
    expect(r.code).to.equal(2);
    expect(r.signal).to.equal(null);
    expect(r.stdout.length).to.equal(1048579);
    expect(r.stdout.slice(-5)).to.equal('xxEND');
  });

  it('readOutput without stdout: the exit and an empty string', async () => {
    const child = spawn('/bin/sh', ['-c', 'exit 0'], { stdio: 'ignore' });
    expect(await readOutput(child)).to.deep.equal({ code: 0, signal: null, stdout: '' });
  });
});
