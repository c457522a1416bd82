// RetryableOnce (lib/util/once.ts): a release that concurrent callers share, that a success
// ends for good, that a failure leaves open for the next call, and whose disposal counts
// "someone else released it" (ERR_NOT_MOUNTED) as done.
import { expect } from 'chai';
import { ImgmountError, SystemError } from '../../../lib/errors';
import { RetryableOnce } from '../../../lib/util/once';

function deferred(): { promise: Promise<void>; resolve: () => void; reject: (e: unknown) => void } {
  let resolve!: () => void;
  let reject!: (e: unknown) => void;
  const promise = new Promise<void>((res, rej) => ((resolve = res), (reject = rej)));
  return { promise, resolve, reject };
}

const tick = () => new Promise((r) => setImmediate(r));

describe('util/once: RetryableOnce', () => {
  it('not started until run; concurrent callers share the one attempt', async () => {
    const once = new RetryableOnce();
    expect(once.started).to.equal(false);
    const gate = deferred();
    let calls = 0;
    const attempt = () => {
      calls++;
      return gate.promise;
    };
    const a = once.run(attempt);
    const b = once.run(attempt);
    expect(once.started).to.equal(true);
    expect(b).to.equal(a);
    gate.resolve();
    await Promise.all([a, b]);
    expect(calls).to.equal(1);
  });

  it('a success is final: later calls resolve without another attempt', async () => {
    const once = new RetryableOnce();
    let calls = 0;
    await once.run(async () => void calls++);
    await once.run(async () => void calls++);
    expect(calls).to.equal(1);
    expect(once.started).to.equal(true);
  });

  it('a failure rejects every caller of that attempt, then the next call tries again', async () => {
    const once = new RetryableOnce();
    const gate = deferred();
    const a = once.run(() => gate.promise);
    const b = once.run(() => Promise.resolve());
    gate.reject(new Error('EBUSY'));
    expect(await a.catch((e: Error) => e.message)).to.equal('EBUSY');
    expect(await b.catch((e: Error) => e.message)).to.equal('EBUSY');
    await tick();
    expect(once.started).to.equal(false);
    let calls = 0;
    await once.run(async () => void calls++);
    expect(calls).to.equal(1);
    expect(once.started).to.equal(true);
  });

  it('a throwing attempt function is not caught: the caller sees the throw and nothing starts', () => {
    const once = new RetryableOnce();
    expect(() =>
      once.run(() => {
        throw new Error('sync');
      }),
    ).to.throw('sync');
    expect(once.started).to.equal(false);
  });

  it('dispose: ERR_NOT_MOUNTED is success (and final); any other error is thrown and can be retried', async () => {
    const gone = new RetryableOnce();
    await gone.dispose(async () => {
      throw new ImgmountError('ERR_NOT_MOUNTED', 'not mounted');
    });
    expect(gone.started).to.equal(true);
    let calls = 0;
    await gone.run(async () => void calls++);
    expect(calls).to.equal(0);

    const busy = new RetryableOnce();
    const err = await busy
      .dispose(async () => {
        throw new SystemError({ errno: 16, syscall: 'umount2' });
      })
      .catch((e: unknown) => e);
    expect((err as SystemError).code).to.equal('EBUSY');
    await tick();
    expect(busy.started).to.equal(false);
    await busy.dispose(async () => void calls++);
    expect(calls).to.equal(1);
  });

  it('dispose finds ERR_NOT_MOUNTED through causes', async () => {
    const once = new RetryableOnce();
    await once.dispose(async () => {
      throw new Error('release failed', { cause: new ImgmountError('ERR_NOT_MOUNTED', 'gone') });
    });
    expect(once.started).to.equal(true);
  });
});
