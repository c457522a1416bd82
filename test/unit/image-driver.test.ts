// The driver registry: Apptainer's errors in Apptainer's order.
import { expect } from 'chai';
import { ImgmountError, getDriver, registerDriver, unregisterDriver, type Driver } from '../../lib';

const noop: Driver = {
  mount: async () => undefined,
  start: async () => undefined,
  stop: async () => undefined,
  features: () => 0,
};

describe('driver registry', () => {
  afterEach(() => unregisterDriver('test-driver'));

  it('registers and returns a driver by name', () => {
    expect(getDriver('test-driver')).to.equal(undefined);
    registerDriver('test-driver', noop);
    expect(getDriver('test-driver')).to.equal(noop);
  });

  it('refuses an empty name, a taken name and a missing driver, in that order', () => {
    const codeAndMessage = (fn: () => void) => {
      try {
        fn();
      } catch (e) {
        return [(e as ImgmountError).code, (e as Error).message];
      }
      return [];
    };
    expect(codeAndMessage(() => registerDriver('', null as unknown as Driver))).to.deep.equal(['ERR_DRIVER_REGISTRY', 'empty name']);
    registerDriver('test-driver', noop);
    expect(codeAndMessage(() => registerDriver('test-driver', null as unknown as Driver))).to.deep.equal([
      'ERR_DRIVER_REGISTRY',
      'test-driver is already registered',
    ]);
    expect(codeAndMessage(() => registerDriver('other', null as unknown as Driver))).to.deep.equal(['ERR_DRIVER_REGISTRY', 'nil driver']);
    expect(getDriver('other')).to.equal(undefined);
  });
});
