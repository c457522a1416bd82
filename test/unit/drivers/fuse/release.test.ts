// What the FUSE driver decides about releasing without doing it: how long a helper gets to stop
// (lib/drivers/fuse/tear-down.ts), and what its mount record says when it merges into the
// record root() keeps for the same target (lib/drivers/fuse/mount-run.ts).
import { expect } from 'chai';
import { mergeFuseRecord } from '../../../../lib/drivers/fuse/mount-run';
import type { FuseMountRecord } from '../../../../lib/drivers/fuse/release';
import { layerStopTimings } from '../../../../lib/drivers/fuse/tear-down';

describe('fuse: release decisions', () => {
  it('layerStopTimings: as configured for a read-only layer', () => {
    expect(layerStopTimings(undefined, 10000, { readOnly: true })).to.deep.equal({});
    expect(layerStopTimings({ graceMs: 200, termMs: 300 }, 10000, { readOnly: true })).to.deep.equal({ graceMs: 200, termMs: 300 });
  });

  it('layerStopTimings: a writable layer (fuse2fs writing back) gets at least the mount timeout as grace', () => {
    expect(layerStopTimings(undefined, 10000, { readOnly: false })).to.deep.equal({ graceMs: 10000 });
    expect(layerStopTimings({ graceMs: 200, killMs: 50 }, 5000, { readOnly: false })).to.deep.equal({ graceMs: 5000, killMs: 50 });
    expect(layerStopTimings({ graceMs: 30000 }, 5000, { readOnly: false })).to.deep.equal({ graceMs: 30000 });
  });

  it("mergeFuseRecord: our helpers and session's mounts replace ours in root()'s record; the caller's entries stay", () => {
    const prior: FuseMountRecord = {
      target: '/run/c1/rootfs',
      mntns: '4026531841',
      driver: 'kernel',
      fstype: 'overlay',
      helpers: [
        { program: 'squashfuse_ll', pid: 100, startTime: '5' },
        { program: 'fuse-overlayfs', pid: 200, startTime: '6' },
      ],
      internalMounts: ['/run/imgmount/sessions/root-a/lower', '/run/imgmount/sessions/fuse-b/stage-0'],
      sessionDir: '/run/imgmount/sessions/root-a',
      moreSessionDirs: ['/run/imgmount/sessions/fuse-z'],
      owner: { pid: 1, startTime: '2' },
      created: '2026-01-01T00:00:00.000Z',
    };
    const ours: FuseMountRecord = {
      target: '/run/c1/rootfs',
      mntns: '4026531841',
      driver: 'fuse',
      fstype: 'fuse.fuse-overlayfs',
      helpers: [{ program: 'fuse-overlayfs', pid: 200, startTime: '7' }],
      internalMounts: ['/run/imgmount/sessions/fuse-b/plain'],
      sessionDir: '/run/imgmount/sessions/fuse-b',
      persist: false,
      created: '2026-01-01T00:00:01.000Z',
    };
    expect(mergeFuseRecord(prior, ours)).to.deep.equal({
      target: '/run/c1/rootfs',
      mntns: '4026531841',
      driver: 'fuse',
      fstype: 'fuse.fuse-overlayfs',
      helpers: [
        { program: 'squashfuse_ll', pid: 100, startTime: '5' },
        { program: 'fuse-overlayfs', pid: 200, startTime: '7' },
      ],
      internalMounts: ['/run/imgmount/sessions/fuse-b/plain', '/run/imgmount/sessions/root-a/lower'],
      sessionDir: '/run/imgmount/sessions/root-a',
      moreSessionDirs: ['/run/imgmount/sessions/fuse-z', '/run/imgmount/sessions/fuse-b'],
      owner: { pid: 1, startTime: '2' },
      created: '2026-01-01T00:00:00.000Z',
    });
  });

  it("mergeFuseRecord: no session directory of ours; the caller's own session directory is not listed again", () => {
    const prior: FuseMountRecord = {
      target: '/t', mntns: '1', driver: 'kernel', fstype: 'overlay', helpers: [], internalMounts: ['/s/root-a/x'],
      sessionDir: '/s/root-a', moreSessionDirs: ['/s/root-a'], created: 'c',
    };
    const ours: FuseMountRecord = { target: '/t', mntns: '1', driver: 'fuse', fstype: 'fuse.squashfuse_ll', helpers: [], internalMounts: [], created: 'd' };
    expect(mergeFuseRecord(prior, ours)).to.deep.equal({
      target: '/t', mntns: '1', driver: 'fuse', fstype: 'fuse.squashfuse_ll', helpers: [], internalMounts: ['/s/root-a/x'],
      sessionDir: '/s/root-a', moreSessionDirs: [], created: 'c',
    });
  });
});
