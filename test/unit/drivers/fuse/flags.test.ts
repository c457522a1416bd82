// The mount-flag translation the FUSE driver takes from lib/mount/flags.ts: the flags of the
// mount it makes with a passed /dev/fuse fd, and the bind remount that gives a self-mounted
// helper's mount what it lacks (lib/drivers/fuse/bring-up.ts).
import { expect } from 'chai';
import { missingMountFlags } from '../../../../lib/drivers/fuse/bring-up';
import { mountFlagsToNumber, perMountFlags } from '../../../../lib/mount/flags';

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

  it('missingMountFlags: nothing to do when the helper mounted nosuid,nodev (and ro when asked)', () => {
    expect(missingMountFlags(['ro', 'nosuid', 'nodev', 'relatime'], { readOnly: true, noexec: false }).missing).to.deep.equal([]);
    expect(missingMountFlags(['rw', 'nosuid', 'nodev', 'relatime'], { readOnly: false, noexec: false }).missing).to.deep.equal([]);
  });

  it("missingMountFlags: a fuse2fs mount left rw: remount|bind with ro added and the flags it has kept", () => {
    // MS_REMOUNT 0x20 | MS_BIND 0x1000 | ro 0x1 | nosuid 0x2 | nodev 0x4 | relatime 0x200000
    expect(missingMountFlags(['rw', 'nosuid', 'nodev', 'relatime'], { readOnly: true, noexec: false })).to.deep.equal({ missing: ['ro'], flags: 0x201027 });
  });

  it('missingMountFlags: without nosuid,nodev and with noexec asked: all three added, noatime kept', () => {
    // MS_REMOUNT 0x20 | MS_BIND 0x1000 | nosuid 0x2 | nodev 0x4 | noexec 0x8 | noatime 0x400
    expect(missingMountFlags(['rw', 'noatime'], { readOnly: false, noexec: true })).to.deep.equal({ missing: ['nosuid', 'nodev', 'noexec'], flags: 0x142e });
  });
});
