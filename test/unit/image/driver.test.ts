// The driver registry: Apptainer's errors in Apptainer's order.
import { expect } from 'chai';
import { ImgmountError, getDriver, registerDriver, unregisterDriver, type Driver } from '../../../lib';

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

describe('built-in drivers in the registry', () => {
  it("kernel and fuse are registered, with Apptainer's life cycle and clear state errors", async () => {
    const { KernelDriver, FuseDriver } = await import('../../../lib');
    const k = getDriver('kernel');
    expect(k).to.be.instanceOf(KernelDriver);
    expect(getDriver('fuse')).to.be.instanceOf(FuseDriver);
    const fresh = new KernelDriver();
    const params = { source: '/nonexistent', target: '/nonexistent-target', filesystem: 'squashfs', flags: 0, offset: 0, size: 0, fsOptions: [] };
    const noop = async () => undefined;
    const before = await fresh.mount(params, noop).catch((e: ImgmountError) => e);
    expect((before as ImgmountError).code).to.equal('ERR_DRIVER_STATE');
    expect((before as Error).message).to.match(/not started: call start\(\) before mount\(\)/);
    await fresh.start({ sessionPath: '', usernsFd: -1, fuseFd: -1 }, 0);
    expect(((await fresh.start({ sessionPath: '', usernsFd: -1, fuseFd: -1 }, 0).catch((e: ImgmountError) => e)) as ImgmountError).code).to.equal('ERR_DRIVER_STATE');
    await fresh.stop('');
    const after = await fresh.mount(params, noop).catch((e: ImgmountError) => e);
    expect((after as Error).message).to.match(/was stopped: mount\(\) after stop\(\) is not allowed/);
    expect(fresh.features() & 3).to.equal(3); // squashfs and ext3
  });
});
