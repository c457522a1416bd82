// Flag translation (lib/mount/flags.ts): option names and numbers to mount(2) MS_* flags, and
// MS_* flags plus data to what fsconfig/fsmount/mount_setattr take (superblock options and
// MOUNT_ATTR_* bits), or null when only mount(2) can do it. Expected values are the kernel's
// numbers (include/uapi/linux/mount.h), written out.
import { expect } from 'chai';
import {
  MS_BIND,
  MS_NODEV,
  MS_NOSUID,
  MS_RDONLY,
  formatMountFlags,
  mountDataToString,
  mountFlagsToNumber,
  parseMountData,
  toNewApi,
  umountFlagsToNumber,
  type MountFlagName,
} from '../../../lib/mount/flags';

/** Every name mountFlagsToNumber accepts, with the kernel's value. */
const NAMES: Array<[MountFlagName, number]> = [
  ['ro', 1],
  ['rdonly', 1],
  ['nosuid', 2],
  ['nodev', 4],
  ['noexec', 8],
  ['sync', 16],
  ['remount', 32],
  ['mand', 64],
  ['dirsync', 128],
  ['nosymfollow', 256],
  ['noatime', 1024],
  ['nodiratime', 2048],
  ['bind', 4096],
  ['move', 8192],
  ['rec', 16384],
  ['silent', 32768],
  ['unbindable', 131072],
  ['private', 262144],
  ['slave', 524288],
  ['shared', 1048576],
  ['relatime', 2097152],
  ['strictatime', 16777216],
  ['lazytime', 33554432],
];

function argError(fn: () => unknown): Error & { code: string } {
  try {
    fn();
  } catch (err) {
    return err as Error & { code: string };
  }
  throw new Error('expected an argument error, nothing was thrown');
}

describe('mount/flags: options, MS_* flags and mount attributes', () => {
  describe('mountFlagsToNumber', () => {
    it('accepts numeric, bigint, named and object flags', () => {
      expect(mountFlagsToNumber(7)).to.equal(MS_RDONLY | MS_NOSUID | MS_NODEV);
      expect(mountFlagsToNumber(7n)).to.equal(7);
      expect(mountFlagsToNumber(['ro', 'nosuid', 'nodev'])).to.equal(7);
      expect(mountFlagsToNumber({ ro: true, nosuid: false, bind: true })).to.equal(MS_RDONLY | MS_BIND);
      expect(() => mountFlagsToNumber(-1)).to.throw(RangeError);
      expect(() => mountFlagsToNumber(['nope' as never])).to.throw(TypeError);
    });

    it('knows every name by the kernel value, alone, in a list and as a switch', () => {
      for (const [name, value] of NAMES) {
        expect(mountFlagsToNumber([name]), name).to.equal(value);
        expect(mountFlagsToNumber({ [name]: true }), name).to.equal(value);
      }
      expect(mountFlagsToNumber(NAMES.map(([n]) => n))).to.equal(0x33efdff);
    });

    it('nothing is 0; a repeated or synonymous name counts once', () => {
      expect(mountFlagsToNumber(undefined)).to.equal(0);
      expect(mountFlagsToNumber([])).to.equal(0);
      expect(mountFlagsToNumber({})).to.equal(0);
      expect(mountFlagsToNumber(['ro', 'rdonly', 'ro'])).to.equal(1);
    });

    it('numbers: any unsigned 32-bit integer, passed through', () => {
      expect(mountFlagsToNumber(0)).to.equal(0);
      expect(mountFlagsToNumber(0xffffffff)).to.equal(4294967295);
      expect(mountFlagsToNumber(0xffffffffn)).to.equal(4294967295);
      expect(mountFlagsToNumber(1 << 30)).to.equal(1073741824);
    });

    it('out of range: ERR_OUT_OF_RANGE naming the argument', () => {
      for (const bad of [2 ** 32, 1.5, -1, NaN, 2n ** 32n, -1n]) {
        const e = argError(() => mountFlagsToNumber(bad, 'options.flags'));
        expect(e, String(bad)).to.be.instanceOf(RangeError);
        expect(e.code).to.equal('ERR_OUT_OF_RANGE');
        expect(e.message).to.match(/^The value of "options\.flags" is out of range\. It must be an unsigned 32-bit integer\. Received /);
      }
      expect(argError(() => mountFlagsToNumber(2 ** 32)).message).to.equal(
        'The value of "flags" is out of range. It must be an unsigned 32-bit integer. Received type number (4294967296)',
      );
    });

    it('unknown names (inherited ones too): ERR_INVALID_ARG_VALUE listing the names', () => {
      const e = argError(() => mountFlagsToNumber(['ro', 'readonly' as MountFlagName]));
      expect(e).to.be.instanceOf(TypeError);
      expect(e.code).to.equal('ERR_INVALID_ARG_VALUE');
      expect(e.message).to.equal(
        "The argument 'flags' must be one of ro, rdonly, nosuid, nodev, noexec, sync, remount, mand, dirsync, nosymfollow, noatime, nodiratime, bind, move, rec, silent, unbindable, private, slave, shared, relatime, strictatime, lazytime. Received type string ('readonly')",
      );
      expect(argError(() => mountFlagsToNumber(['toString' as MountFlagName])).code).to.equal('ERR_INVALID_ARG_VALUE');
      expect(argError(() => mountFlagsToNumber({ constructor: true } as never)).code).to.equal('ERR_INVALID_ARG_VALUE');
      expect(argError(() => mountFlagsToNumber([1 as never])).code).to.equal('ERR_INVALID_ARG_VALUE');
      // A switch that is off is not looked up.
      expect(mountFlagsToNumber({ readonly: false } as never)).to.equal(0);
    });

    it('another type: ERR_INVALID_ARG_TYPE', () => {
      for (const bad of ['ro', null, true]) {
        const e = argError(() => mountFlagsToNumber(bad as never));
        expect(e, String(bad)).to.be.instanceOf(TypeError);
        expect(e.code).to.equal('ERR_INVALID_ARG_TYPE');
      }
      expect(argError(() => mountFlagsToNumber('ro' as never)).message).to.equal(
        'The "flags" argument must be a number, a bigint, an array of flag names or an object. Received type string (\'ro\')',
      );
    });
  });

  describe('formatMountFlags', () => {
    it('names the bits in order, the rest in hex, nothing as 0', () => {
      expect(formatMountFlags(7 | (1 << 30))).to.equal('MS_RDONLY|MS_NOSUID|MS_NODEV|0x40000000');
      expect(formatMountFlags(0)).to.equal('0');
      expect(formatMountFlags(4096 | 16384)).to.equal('MS_BIND|MS_REC');
      expect(formatMountFlags(1 << 16)).to.equal('MS_POSIXACL');
      expect(formatMountFlags(512)).to.equal('0x200');
      expect(formatMountFlags(0x80000000)).to.equal('0x80000000');
      expect(formatMountFlags(-1)).to.equal(
        'MS_RDONLY|MS_NOSUID|MS_NODEV|MS_NOEXEC|MS_SYNCHRONOUS|MS_REMOUNT|MS_MANDLOCK|MS_DIRSYNC|MS_NOSYMFOLLOW|MS_NOATIME|MS_NODIRATIME|' +
          'MS_BIND|MS_MOVE|MS_REC|MS_SILENT|MS_POSIXACL|MS_UNBINDABLE|MS_PRIVATE|MS_SLAVE|MS_SHARED|MS_RELATIME|MS_STRICTATIME|MS_LAZYTIME|0xfcc00200',
      );
    });
  });

  describe('umountFlagsToNumber', () => {
    it('numbers 0..15 and the names force, detach, expire, nofollow', () => {
      expect(umountFlagsToNumber(undefined)).to.equal(0);
      expect(umountFlagsToNumber(2)).to.equal(2);
      expect(umountFlagsToNumber(15)).to.equal(15);
      expect(umountFlagsToNumber([])).to.equal(0);
      expect(umountFlagsToNumber(['force'])).to.equal(1);
      expect(umountFlagsToNumber(['detach'])).to.equal(2);
      expect(umountFlagsToNumber(['expire'])).to.equal(4);
      expect(umountFlagsToNumber(['nofollow'])).to.equal(8);
      expect(umountFlagsToNumber(['detach', 'nofollow', 'detach'])).to.equal(10);
    });

    it('refuses other numbers, names and types', () => {
      for (const bad of [16, -1, 1.5]) {
        const e = argError(() => umountFlagsToNumber(bad));
        expect(e.code, String(bad)).to.equal('ERR_OUT_OF_RANGE');
        expect(e.message).to.match(/^The value of "flags" is out of range\. It must be a umount2 flag set \(0\.\.15\)\. Received type number/);
      }
      const name = argError(() => umountFlagsToNumber(['lazy' as never]));
      expect(name.code).to.equal('ERR_INVALID_ARG_VALUE');
      expect(name.message).to.equal("The argument 'flags' must be force, detach, expire or nofollow. Received type string ('lazy')");
      expect(argError(() => umountFlagsToNumber([2 as never])).code).to.equal('ERR_INVALID_ARG_VALUE');
      expect(argError(() => umountFlagsToNumber('detach' as never)).code).to.equal('ERR_INVALID_ARG_TYPE');
      expect(argError(() => umountFlagsToNumber(2n as never)).code).to.equal('ERR_INVALID_ARG_TYPE');
    });
  });

  describe('toNewApi: fsconfig options and mount attributes', () => {
    it('translates flags and data for fsconfig/fsmount, and refuses what needs mount(2)', () => {
      expect(toNewApi(MS_RDONLY | MS_NOSUID | MS_NODEV, 'errors=remount-ro,noload')).to.deep.equal({
        options: [['ro', null], ['errors', 'remount-ro'], ['noload', null]],
        attrs: 0x1 | 0x2 | 0x4,
      });
      expect(toNewApi(MS_BIND, undefined)).to.equal(null);
      expect(parseMountData('a=b=c,,d')).to.deep.equal([['a', 'b=c'], ['d', null]]);
    });

    it('each per-mount flag becomes its MOUNT_ATTR_* bit, with no option', () => {
      const cases: Array<[number, number]> = [
        [1, 0x1], // MS_RDONLY: also the superblock option ro (below)
        [2, 0x2],
        [4, 0x4],
        [8, 0x8],
        [1024, 0x10],
        [16777216, 0x20],
        [2048, 0x80],
        [256, 0x200000],
      ];
      for (const [flag, attr] of cases) expect(toNewApi(flag, undefined)?.attrs, formatMountFlags(flag)).to.equal(attr);
      expect(toNewApi(2 | 4 | 8 | 1024 | 2048 | 256 | 16777216, undefined)).to.deep.equal({ options: [], attrs: 0x2000be });
    });

    it('superblock flags become options, in a fixed order before the data; relatime and silent need nothing', () => {
      expect(toNewApi(1 | 16 | 128 | 33554432 | 64, 'size=1m')).to.deep.equal({
        options: [['ro', null], ['sync', null], ['dirsync', null], ['lazytime', null], ['mand', null], ['size', '1m']],
        attrs: 0x1,
      });
      expect(toNewApi(2097152, undefined)).to.deep.equal({ options: [], attrs: 0 });
      expect(toNewApi(32768, undefined)).to.deep.equal({ options: [], attrs: 0 });
      expect(toNewApi(0, '')).to.deep.equal({ options: [], attrs: 0 });
    });

    it('remount, bind, move, rec, propagation, posixacl or an unknown bit: only mount(2) can', () => {
      for (const flag of [32, 4096, 8192, 16384, 131072, 262144, 524288, 1048576, 65536, 512, 0x80000000]) {
        expect(toNewApi(flag | 1, 'x'), formatMountFlags(flag)).to.equal(null);
      }
    });
  });

  describe('mount data', () => {
    it('parseMountData: "a=b,c" into keys and values, empty parts dropped, the first = splits', () => {
      expect(parseMountData(undefined)).to.deep.equal([]);
      expect(parseMountData('')).to.deep.equal([]);
      expect(parseMountData('a=,b')).to.deep.equal([['a', ''], ['b', null]]);
      expect(parseMountData('lowerdir=/a:/b,upperdir=/u')).to.deep.equal([['lowerdir', '/a:/b'], ['upperdir', '/u']]);
    });

    it('mountDataToString: a string as it is; an object as key=value, true as a bare key, false left out', () => {
      expect(mountDataToString(undefined)).to.equal(undefined);
      expect(mountDataToString('a=b,c')).to.equal('a=b,c');
      expect(mountDataToString({ size: '64m', mode: 493, noload: true, discard: false })).to.equal('size=64m,mode=493,noload');
      expect(mountDataToString({})).to.equal('');
      const e = argError(() => mountDataToString(5 as never));
      expect(e.code).to.equal('ERR_INVALID_ARG_TYPE');
      expect(e.message).to.equal('The "data" argument must be a string or an object. Received type number (5)');
      expect(argError(() => mountDataToString(null as never)).code).to.equal('ERR_INVALID_ARG_TYPE');
    });
  });
});
