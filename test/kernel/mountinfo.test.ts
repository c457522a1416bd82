// Pure parsing and translation pieces of the mount layer (no privilege needed).
import { expect } from 'chai';
import {
  MS_BIND,
  MS_NODEV,
  MS_NOSUID,
  MS_RDONLY,
  findMounts,
  formatMountFlags,
  mountFlagsToNumber,
  parseMountInfo,
  parseMountInfoLine,
  unescapeMountField,
} from '../../lib/mount';
import { parseMountData, toNewApi } from '../../lib/mount/flags';
import { parseHelperResult } from '../../lib/ns/helper';
import { loopNumber } from '../../lib/loop';

const SAMPLE = [
  '36 35 98:0 /mnt1 /mnt/parent\\040dir rw,noatime master:1 - ext3 /dev/root rw,errors=continue',
  '63 43 7:1 / /tmp/a ro,nosuid,nodev,relatime - squashfs /dev/loop1 ro,errors=continue',
  '64 43 7:10 / /tmp/ab ro,nosuid,nodev,relatime shared:5 propagate_from:2 - squashfs /dev/loop10 ro',
  '65 43 0:50 / /tmp/tab\\011and\\012nl\\134 rw - tmpfs my\\040src rw,size=1024k',
].join('\n');

describe('mountinfo parsing and mount flags', () => {
  it('parses every field, including optional fields and the separator', () => {
    const e = parseMountInfoLine(SAMPLE.split('\n')[0]!)!;
    expect(e).to.deep.equal({
      id: 36,
      parentId: 35,
      major: 98,
      minor: 0,
      root: '/mnt1',
      mountPoint: '/mnt/parent dir',
      mountOptions: ['rw', 'noatime'],
      optionalFields: ['master:1'],
      fstype: 'ext3',
      source: '/dev/root',
      superOptions: ['rw', 'errors=continue'],
    });
    const two = parseMountInfoLine(SAMPLE.split('\n')[2]!)!;
    expect(two.optionalFields).to.deep.equal(['shared:5', 'propagate_from:2']);
    expect(two.fstype).to.equal('squashfs');
  });

  it('unescapes octal escapes (space, tab, newline, backslash)', () => {
    expect(unescapeMountField('a\\040b\\011c\\012d\\134e')).to.equal('a b\tc\nd\\e');
    const e = parseMountInfo(SAMPLE)[3]!;
    expect(e.mountPoint).to.equal('/tmp/tab\tand\nnl\\');
    expect(e.source).to.equal('my src');
  });

  it('matches exact fields, never prefixes (/dev/loop1 vs /dev/loop10, /tmp/a vs /tmp/ab)', () => {
    const all = parseMountInfo(SAMPLE);
    expect(findMounts(all, { source: '/dev/loop1' }).map((e) => e.id)).to.deep.equal([63]);
    expect(findMounts(all, { mountPoint: '/tmp/a' }).map((e) => e.id)).to.deep.equal([63]);
    expect(findMounts(all, { major: 7, minor: 10 }).map((e) => e.id)).to.deep.equal([64]);
    expect(findMounts(all, { mountPoint: '/tmp' })).to.deep.equal([]);
  });

  it('skips malformed lines instead of guessing', () => {
    expect(parseMountInfo('garbage\n1 2 3\n')).to.deep.equal([]);
  });

  it('accepts numeric, bigint, named and object flags, and formats them', () => {
    expect(mountFlagsToNumber(7)).to.equal(MS_RDONLY | MS_NOSUID | MS_NODEV);
    expect(mountFlagsToNumber(7n)).to.equal(7);
    expect(mountFlagsToNumber(['ro', 'nosuid', 'nodev'])).to.equal(7);
    expect(mountFlagsToNumber({ ro: true, nosuid: false, bind: true })).to.equal(MS_RDONLY | MS_BIND);
    expect(formatMountFlags(7 | (1 << 30))).to.equal('MS_RDONLY|MS_NOSUID|MS_NODEV|0x40000000');
    expect(() => mountFlagsToNumber(-1)).to.throw(RangeError);
    expect(() => mountFlagsToNumber(['nope' as never])).to.throw(TypeError);
  });

  it('translates flags and data for fsconfig/fsmount, and refuses what needs mount(2)', () => {
    expect(toNewApi(MS_RDONLY | MS_NOSUID | MS_NODEV, 'errors=remount-ro,noload')).to.deep.equal({
      options: [['ro', null], ['errors', 'remount-ro'], ['noload', null]],
      attrs: 0x1 | 0x2 | 0x4,
    });
    expect(toNewApi(MS_BIND, undefined)).to.equal(null);
    expect(parseMountData('a=b=c,,d')).to.deep.equal([['a', 'b=c'], ['d', null]]);
  });

  it('parses the helper result format', () => {
    expect(parseHelperResult('OK\n')).to.deep.equal({ ok: true, messages: [] });
    expect(parseHelperResult('ERR 2 move_mount\nK e nope\n')).to.deep.equal({ ok: false, errno: 2, step: 'move_mount', messages: ['e nope'] });
    expect(parseHelperResult('')).to.equal(null);
    expect(parseHelperResult('whatever')).to.equal(null);
  });

  it('names loop devices strictly', () => {
    expect(loopNumber('/dev/loop12')).to.equal(12);
    expect(loopNumber('loop3')).to.equal(3);
    expect(loopNumber(4)).to.equal(4);
    expect(() => loopNumber('/dev/sda')).to.throw(TypeError);
    expect(() => loopNumber(-1)).to.throw(TypeError);
  });
});
