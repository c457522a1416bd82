// The mount-flag translation the FUSE driver takes from lib/mount/flags.ts: the flags of the
// mount it makes with a passed /dev/fuse fd, and the bind remount that gives a self-mounted
// helper's mount what it lacks (lib/drivers/fuse/bring-up.ts).
import { expect } from 'chai';
import { mountFlagsToNumber, perMountFlags } from '../../../lib/mount/flags';

describe('fuse: mount flags', () => {
  it('perMountFlags: the per-mount options mountinfo lists, as MS_* bits', () => {
    expect(perMountFlags(['ro', 'nosuid', 'nodev', 'noexec'])).to.equal(0xf);
    expect(perMountFlags(['rw', 'relatime'])).to.equal(0x200000);
    expect(perMountFlags(['noatime', 'nodiratime'])).to.equal(0xc00);
    expect(perMountFlags(new Set(['strictatime']))).to.equal(0x1000000);
    expect(perMountFlags([])).to.equal(0);
  });

  it('perMountFlags: "rw", superblock options, propagation and operation names add nothing', () => {
    expect(perMountFlags(['rw', 'user_id=0', 'group_id=0', 'default_permissions', 'allow_other', 'bind', 'remount', 'shared', 'rec', 'sync', 'bogus'])).to.equal(0);
  });

  it('mountFlagsToNumber: the switches of a passed-fd FUSE mount', () => {
    expect(mountFlagsToNumber({ nosuid: true, nodev: true, ro: true, noexec: false })).to.equal(7);
    expect(mountFlagsToNumber({ nosuid: true, nodev: true, ro: false, noexec: true })).to.equal(14);
  });
});
