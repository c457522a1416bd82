// Checkpoints between the steps of an operation (lib/util/checkpoint.ts): the test hook sees
// every one by name, then an aborted signal throws AbortError with the signal's reason.
import { expect } from 'chai';
import { AbortError } from '../../../lib/errors';
import { checkpoint, setCheckpointHook } from '../../../lib/util/checkpoint';

describe('util/checkpoint: where an abort is honoured and tests stop an operation', () => {
  afterEach(() => setCheckpointHook(undefined));

  it('without a signal, or with one that has not fired, it returns', () => {
    expect(checkpoint('a', undefined)).to.equal(undefined);
    expect(checkpoint('b', new AbortController().signal)).to.equal(undefined);
  });

  it('an aborted signal throws AbortError whose cause is the reason', () => {
    const reason = new Error('stop now');
    let err: unknown;
    try {
      checkpoint('root:mounted', AbortSignal.abort(reason));
    } catch (e) {
      err = e;
    }
    expect(err).to.be.instanceOf(AbortError);
    expect((err as AbortError).code).to.equal('ABORT_ERR');
    expect((err as AbortError).message).to.equal('The operation was aborted');
    expect((err as AbortError).cause).to.equal(reason);
  });

  it('the hook sees every checkpoint by name, before the abort check', () => {
    const seen: string[] = [];
    setCheckpointHook((name) => seen.push(name));
    checkpoint('one', undefined);
    checkpoint('two', new AbortController().signal);
    expect(() => checkpoint('three', AbortSignal.abort())).to.throw(AbortError);
    expect(seen).to.deep.equal(['one', 'two', 'three']);
  });

  it('a hook that throws stops the operation there, with its error (how tests fail a step)', () => {
    setCheckpointHook((name) => {
      if (name === 'bad') throw new Error(`stopped at ${name}`);
    });
    expect(checkpoint('fine', undefined)).to.equal(undefined);
    expect(() => checkpoint('bad', AbortSignal.abort())).to.throw(Error, 'stopped at bad');
  });

  it('setCheckpointHook(undefined) removes the hook', () => {
    const seen: string[] = [];
    setCheckpointHook((name) => seen.push(name));
    setCheckpointHook(undefined);
    checkpoint('after', undefined);
    expect(seen).to.deep.equal([]);
  });
});
