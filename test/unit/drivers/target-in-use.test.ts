// ERR_TARGET_IN_USE, the pure part (lib/drivers/target-in-use.ts): who holds a target, from the
// record found there and whether its owner runs, and what the refusal says about it.
import { expect } from 'chai';
import { ImgmountError } from '../../../lib/errors';
import type { MountRecord } from '../../../lib/drivers/mount-record';
import { holderOf, targetInUseError } from '../../../lib/drivers/target-in-use';

const record = (owner?: { pid: number; startTime: string }): MountRecord => ({
  target: '/run/c1/rootfs',
  mntns: '4026531841',
  driver: 'kernel',
  fstype: 'squashfs',
  helpers: [],
  internalMounts: [],
  ...(owner ? { owner } : {}),
  created: '2024-01-01T00:00:00.000Z',
});

describe('ERR_TARGET_IN_USE: who holds a target', () => {
  it('a record with a running owner is live (self when it is this process); with a gone owner, dead; without one, persistent', () => {
    expect(holderOf(record({ pid: 42, startTime: '7' }), true, 1)).to.deep.equal({ kind: 'live', pid: 42, self: false });
    expect(holderOf(record({ pid: 42, startTime: '7' }), true, 42)).to.deep.equal({ kind: 'live', pid: 42, self: true });
    expect(holderOf(record({ pid: 42, startTime: '7' }), false, 42)).to.deep.equal({ kind: 'dead', pid: 42 });
    expect(holderOf(record(), false, 1)).to.deep.equal({ kind: 'persistent' });
  });

  it('the message names the target and the holder, and says what releases it', () => {
    const t = '/run/c1/rootfs';
    const f = '/run/imgmount/mounts/x.json';
    const live = targetInUseError(t, f, { kind: 'live', pid: 42, self: false });
    expect(live).to.be.instanceOf(ImgmountError);
    expect(live.code).to.equal('ERR_TARGET_IN_USE');
    expect(live.path).to.equal(t);
    expect(live.message).to.match(/^cannot mount at \/run\/c1\/rootfs: the target is in use: a root mounted by pid 42 \(still running\)/);
    expect(live.details).to.deep.equal({ record: f, holder: 'live', pid: 42 });
    expect(targetInUseError(t, f, { kind: 'live', pid: 42, self: true }).message).to.include('pid 42 (this process, still running)');
    const dead = targetInUseError(t, f, { kind: 'dead', pid: 42 });
    expect(dead.message).to.include('left from a process that died (pid 42)').and.to.include('`imgmount cleanup` (or cleanup()) sweeps it');
    expect(targetInUseError(t, f, { kind: 'persistent' }).message).to.include('a persistent mount').and.to.include('`imgmount umount /run/c1/rootfs`');
    const why = new ImgmountError('ERR_MOUNT_RECORD_INVALID', 'mount record x is refused: it is a symbolic link');
    const invalid = targetInUseError(t, f, { kind: 'invalid', error: why });
    expect(invalid.message).to.include(`its mount record ${f} is invalid`).and.to.include('it is a symbolic link');
    expect(invalid.cause).to.equal(why);
    expect(invalid.details).to.deep.equal({ record: f, holder: 'invalid' });
    expect(targetInUseError(t, f, { kind: 'vanished' }).details).to.deep.equal({ record: f, holder: 'vanished' });
  });
});
