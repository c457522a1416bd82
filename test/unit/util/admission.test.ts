// Admission (lib/util/admission.ts): at most N at once, in arrival order, and a waiter's abort.
import { expect } from 'chai';
import { AbortError } from '../../../lib/errors';
import * as os from 'node:os';
import { kernelWork } from '../../../lib/mount/kernel-work';
import { Admission, OPERATIONS_IN_FLIGHT } from '../../../lib/util/admission';

function deferred(): { promise: Promise<void>; resolve: () => void } {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => (resolve = r));
  return { promise, resolve };
}

const tick = () => new Promise((r) => setImmediate(r));

describe('admission: at most N operations at once', () => {
  it('runs at most `limit` at once and starts the others in arrival order as slots free', async () => {
    const a = new Admission(2);
    const started: number[] = [];
    const gates = Array.from({ length: 5 }, () => deferred());
    let running = 0;
    let peak = 0;
    const all = gates.map((g, i) =>
      a.run(async () => {
        started.push(i);
        running++;
        peak = Math.max(peak, running);
        await g.promise;
        running--;
        return i;
      }),
    );
    await tick();
    expect(started).to.deep.equal([0, 1]);
    gates[1]!.resolve();
    await tick();
    expect(started).to.deep.equal([0, 1, 2]);
    for (const g of gates) g.resolve();
    expect(await Promise.all(all)).to.deep.equal([0, 1, 2, 3, 4]);
    expect(started).to.deep.equal([0, 1, 2, 3, 4]);
    expect(peak).to.equal(2);
  });

  it('a failure frees its slot too', async () => {
    const a = new Admission(1);
    const first = a.run(async () => {
      throw new Error('boom');
    });
    const second = a.run(async () => 'ran');
    expect(await first.catch((e: Error) => e.message)).to.equal('boom');
    expect(await second).to.equal('ran');
  });

  it('a caller aborted while waiting rejects with AbortError and takes no slot; one aborted before asking never waits', async () => {
    const a = new Admission(1);
    const gate = deferred();
    const holder = a.run(() => gate.promise);
    const ac = new AbortController();
    let ranAborted = false;
    const waiting = a.run(async () => {
      ranAborted = true;
    }, ac.signal);
    const next = a.run(async () => 'next');
    ac.abort();
    const err = await waiting.catch((e: unknown) => e);
    expect(err).to.be.instanceOf(AbortError);
    gate.resolve();
    await holder;
    expect(await next).to.equal('next');
    expect(ranAborted).to.equal(false);
    const pre = await a.run(async () => 'x', AbortSignal.abort()).catch((e: unknown) => e);
    // A free slot: an already-aborted signal is not looked at (the operation checks it itself).
    expect(pre).to.equal('x');
  });
  it('a caller that must wait with an already-aborted signal rejects at once, with the reason as cause, and holds no place in line', async () => {
    const a = new Admission(1);
    const gate = deferred();
    const holder = a.run(() => gate.promise);
    const reason = new Error('gave up');
    let ran = false;
    const err = await a
      .run(async () => {
        ran = true;
      }, AbortSignal.abort(reason))
      .catch((e: unknown) => e);
    expect(err).to.be.instanceOf(AbortError);
    expect((err as AbortError).cause).to.equal(reason);
    const next = a.run(async () => 'next');
    gate.resolve();
    await holder;
    expect(await next).to.equal('next');
    expect(ran).to.equal(false);
  });

  it('an abort after being admitted is for the operation to notice: admission ignores it', async () => {
    const a = new Admission(1);
    const ac = new AbortController();
    const gate = deferred();
    const running = a.run(async () => {
      await gate.promise;
      return 'finished';
    }, ac.signal);
    await tick();
    ac.abort();
    gate.resolve();
    expect(await running).to.equal('finished');
  });

  it('runBriefly: a call still running after holdMs gives its slot to the next, and gives nothing back twice', async () => {
    const a = new Admission(1);
    const stuck = deferred();
    const order: string[] = [];
    const first = a.runBriefly(async () => {
      order.push('stuck starts');
      await stuck.promise;
      order.push('stuck ends');
    }, 20);
    const quick = deferred();
    const second = a.runBriefly(async () => {
      order.push('second starts');
      await quick.promise;
    }, 10_000);
    await tick();
    expect(order, 'the second waits while the first computes').to.deep.equal(['stuck starts']);
    await new Promise((r) => setTimeout(r, 40));
    expect(order, 'the first let its slot go after 20 ms').to.deep.equal(['stuck starts', 'second starts']);
    // The first ending now must not free a slot it gave up already: a third still waits for the second.
    stuck.resolve();
    await first;
    const third = a.runBriefly(async () => order.push('third starts'), 10_000);
    await tick();
    expect(order).to.deep.equal(['stuck starts', 'second starts', 'stuck ends']);
    quick.resolve();
    await Promise.all([second, third]);
    expect(order.at(-1)).to.equal('third starts');
  });

  it('kernel work is admitted one per CPU', () => {
    expect(kernelWork.limit).to.equal(Math.max(1, os.availableParallelism()));
  });

  it('the limit is what it was built with; the library admits 4 of a kind at once', () => {
    expect(new Admission(3).limit).to.equal(3);
    expect(OPERATIONS_IN_FLIGHT).to.equal(4);
  });
});
