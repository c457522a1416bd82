// The sysfs loop status parser (lib/loop/status.ts), without a loop device: the attribute
// texts are what the kernel shows under /sys/block/loopN.
import { expect } from 'chai';
import { constants } from 'node:os';
import { LOOP_SYSFS_ATTRS, parseLoopStatus } from '../../../lib/loop/status';

const { ENOENT } = constants.errno;

/** The values of LOOP_SYSFS_ATTRS, by attribute name (missing ones read as ENOENT). */
function sysfs(attrs: Partial<Record<(typeof LOOP_SYSFS_ATTRS)[number], string | number>>): Array<string | number> {
  return LOOP_SYSFS_ATTRS.map((a) => attrs[a] ?? ENOENT);
}

const bound = {
  dev: '7:3\n',
  ro: '1\n',
  size: '8\n',
  'loop/backing_file': '/images/alpine.sif\n',
  'loop/offset': '32768\n',
  'loop/sizelimit': '4096\n',
  'loop/autoclear': '1\n',
  'loop/partscan': '0\n',
  'loop/dio': '0\n',
} as const;

describe('unit: loop status from sysfs', () => {
  it('reads a bound device: names, numbers, sizes in bytes and flags', () => {
    expect(parseLoopStatus(3, sysfs(bound))).to.deep.equal({
      name: 'loop3',
      number: 3,
      path: '/dev/loop3',
      majorMinor: '7:3',
      bound: true,
      backingFile: '/images/alpine.sif',
      backingFileDeleted: false,
      offset: 32768,
      sizeLimit: 4096,
      size: 4096, // 8 sectors of 512 bytes
      readOnly: true,
      autoclear: true,
      partscan: false,
      directIo: false,
    });
  });

  it('an unbound device (no loop/ directory): not bound, zero offsets, no loop flags', () => {
    const s = parseLoopStatus(5, sysfs({ dev: '7:5\n', ro: '0\n', size: '0\n' }));
    expect(s).to.include({ name: 'loop5', bound: false, backingFile: null, backingFileDeleted: false, offset: 0, sizeLimit: 0, size: 0 });
    expect(s).to.include({ readOnly: false, autoclear: false, partscan: false, directIo: false });
  });

  it('loop flags of an unbound device are never reported, even if a stale value is read', () => {
    const s = parseLoopStatus(5, sysfs({ dev: '7:5\n', ro: '0\n', size: '0\n', 'loop/autoclear': '1\n', 'loop/dio': '1\n' }));
    expect(s).to.include({ bound: false, autoclear: false, directIo: false });
  });

  it('a device that does not exist (no dev attribute) is null', () => {
    expect(parseLoopStatus(9, sysfs({}))).to.equal(null);
    expect(parseLoopStatus(9, sysfs({ ...bound, dev: ENOENT }))).to.equal(null);
  });

  it("strips the kernel's ' (deleted)' and says so", () => {
    const s = parseLoopStatus(3, sysfs({ ...bound, 'loop/backing_file': '/tmp/gone.sif (deleted)\n' }));
    expect(s).to.include({ backingFile: '/tmp/gone.sif', backingFileDeleted: true });
  });

  it('keeps a backing file name with spaces and without a trailing newline', () => {
    const s = parseLoopStatus(3, sysfs({ ...bound, 'loop/backing_file': '/my images/a b.sif' }));
    expect(s).to.include({ backingFile: '/my images/a b.sif', backingFileDeleted: false });
  });

  it('values beyond 2^53 come back as bigint, smaller ones as number', () => {
    const s = parseLoopStatus(3, sysfs({ ...bound, 'loop/offset': '18446744073709551615\n', size: '36028797018963968\n' }))!;
    expect(s.offset).to.equal(18446744073709551615n);
    expect(s.size).to.equal(36028797018963968n * 512n);
    expect(s.sizeLimit).to.equal(4096);
  });

  it('an attribute that could not be read (an errno) or is not a number counts as 0 / false', () => {
    const s = parseLoopStatus(3, sysfs({ ...bound, 'loop/offset': 5, 'loop/sizelimit': 'garbage\n', 'loop/partscan': ENOENT, ro: 'yes\n' }))!;
    expect(s).to.include({ offset: 0, sizeLimit: 0, partscan: false, readOnly: false, bound: true });
  });

  it('flags are exactly "1": direct I/O and partition scanning when set', () => {
    const s = parseLoopStatus(3, sysfs({ ...bound, 'loop/partscan': '1\n', 'loop/dio': '1\n', 'loop/autoclear': '0\n' }))!;
    expect(s).to.include({ partscan: true, directIo: true, autoclear: false });
  });
});
