// The error a call throws or a promise rejects with, checked to be of the class expected (the
// test fails if nothing is thrown, or something else is).
import { expect } from 'chai';

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type ErrorClass<E extends Error> = new (...args: any[]) => E;

/** What `fn` throws, which must be a `type`. */
export function thrown<E extends Error>(fn: () => unknown, type: ErrorClass<E>): E {
  try {
    fn();
  } catch (err) {
    expect(err).to.be.instanceOf(type);
    return err as E;
  }
  throw new Error(`expected ${type.name} to be thrown, nothing was`);
}

/** What `p` rejects with, which must be a `type`. */
export async function rejection<E extends Error>(p: Promise<unknown>, type: ErrorClass<E>): Promise<E> {
  const err = await p.then(
    () => {
      throw new Error(`expected a rejection with ${type.name}, it resolved`);
    },
    (e: unknown) => e,
  );
  expect(err).to.be.instanceOf(type);
  return err as E;
}
