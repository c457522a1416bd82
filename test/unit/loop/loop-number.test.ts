// Naming loop devices (lib/loop/status.ts loopNumber): 3, 'loop3' and '/dev/loop3' are device 3;
// nothing else is a loop device.
import { expect } from 'chai';
import { loopNumber } from '../../../lib/loop/status';

describe('loop: naming loop devices', () => {
  it('names loop devices strictly', () => {
    expect(loopNumber('/dev/loop12')).to.equal(12);
    expect(loopNumber('loop3')).to.equal(3);
    expect(loopNumber(4)).to.equal(4);
    expect(() => loopNumber('/dev/sda')).to.throw(TypeError);
    expect(() => loopNumber(-1)).to.throw(TypeError);
  });

  it('a bare number as a string, and 0', () => {
    expect(loopNumber('7')).to.equal(7);
    expect(loopNumber('/dev/7')).to.equal(7);
    expect(loopNumber(0)).to.equal(0);
    expect(loopNumber('loop0')).to.equal(0);
  });

  it('refuses other paths, names, numbers and types with Node-style argument errors', () => {
    for (const bad of ['/dev/loop', '/dev/loop1p1', '/sys/block/loop1', 'loop-1', ' loop1', '/dev/loop1/', '']) {
      const e = (() => {
        try {
          loopNumber(bad);
        } catch (err) {
          return err as TypeError & { code: string };
        }
        return undefined;
      })();
      expect(e, bad).to.be.instanceOf(TypeError);
      expect(e!.code).to.equal('ERR_INVALID_ARG_VALUE');
    }
    expect(() => loopNumber(1.5)).to.throw(TypeError, "The argument 'device' must be a non-negative integer. Received type number (1.5)");
    expect(() => loopNumber(2 ** 53)).to.throw(TypeError, 'must be a non-negative integer');
    expect(() => loopNumber('/dev/sda')).to.throw(TypeError, "The argument 'device' must name a loop device ('/dev/loopN', 'loopN' or N). Received type string ('/dev/sda')");
    expect(() => loopNumber(null)).to.throw(TypeError, 'The "device" argument must be a loop device number or path. Received null');
    expect(() => loopNumber(3n)).to.throw(TypeError, 'The "device" argument must be a loop device number or path');
  });
});
