// The main job's cost in pool round trips (see test/support/hops.ts), not in time: init() of a
// SIF is one native call, a plain root() pins, records and mounts in one, close() undoes it in
// one. A change that adds a hop to the path every user takes fails here, on any machine.
import { expect } from 'chai';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { init, type Image } from '../../../lib';
import { hostArch } from '../../../lib/image/arch';
import { capabilities } from '../../../lib/mount';
import { mountRecordFile } from '../../../lib/drivers/mount-record';
import { root } from '../../../lib/root';
import { createSif } from '../../../lib/sif';
import { DataGeneric, DataPartition, FsSquash, PartPrimSys } from '../../../lib/sif/constants';
import { fixture } from '../../support/fixtures';
import { testTmp } from '../../support/hooks';
import { countHops, type HopCount } from '../../support/hops';
import { busyboxSif, mountDir } from '../../support/images';
import { skip } from '../../support/skip';
import { requireKernel, startNamespaceHolder, stopHolder } from '../../support/kernel';
import { kernelMountsAt } from '../../support/kernel-mountinfo';
import { registerMountPoint } from '../../support/leaks';

function within(what: string, c: HopCount, hops: number): void {
  expect(c.hops, `${what}: ${c.hops} hops (at most ${hops}):\n    ${c.sites.join('\n    ')}`).to.be.at.most(hops);
  expect(c.spawns, `${what} spawned a process:\n    ${c.sites.join('\n    ')}`).to.equal(0);
}

describe('kernel: pool round trips of the main job (init -> root() -> close())', function () {
  before(async function () {
    requireKernel(this);
    // Warm: module loading and the once-per-process probes are not the per-root cost.
    await capabilities();
    const img = await init(busyboxSif.path);
    // (Every kind: the first root on a session directory checks the state directory's sessions/ once.)
    for (const options of [{}, { writableTmpfs: true }, { writableTmpfs: true, dirs: true }]) {
      if (options.dirs) process.env.IMGMOUNT_OVERLAY_LAYERS = 'dirs';
      try {
        const r = await root(img, registerMountPoint(mountDir('hops-warm')), { writableTmpfs: options.writableTmpfs, signal: AbortSignal.timeout(10_000) });
        await r.close();
      } finally {
        delete process.env.IMGMOUNT_OVERLAY_LAYERS;
      }
    }
    await img.close();
  });

  it('a SIF root by the kernel driver: init 1, root() 1 (pin, record, attach and mount in one call), close() 1 (the record goes with the unmount), image.close() 1', async () => {
    const dir = registerMountPoint(mountDir('hops-sif'));
    const { value: img, count: opened } = await countHops(() => init(busyboxSif.path));
    within('init()', opened, 1);
    try {
      const { value: r, count: mounted } = await countHops(() => root(img, dir));
      try {
        within('root()', mounted, 1);
        expect(fs.existsSync(path.join(dir, 'bin', 'busybox')), 'the root is mounted').to.equal(true);
      } finally {
        const record = await mountRecordFile(r.root.path);
        expect(fs.existsSync(record), 'the root is recorded').to.equal(true);
        const { count: released } = await countHops(() => r.close());
        within('root.close()', released, 1);
        expect(fs.existsSync(record), 'the record is removed with the unmount').to.equal(false);
      }
    } finally {
      const { count: closed } = await countHops(() => img.close());
      within('image.close()', closed, 1);
    }
  });

  for (const [path_, rootHops, closeHops, goes] of [
    ['one native call (the overlay over detached layers)', 1, 1, 'with the unmount'],
    ['the general path (IMGMOUNT_OVERLAY_LAYERS=dirs: layers on a session directory)', 9, 4, 'with the session directory'],
  ] as const) {
    it(`a tmpfs-overlay root by ${path_}: root() ${rootHops}, close() ${closeHops} (the record goes ${goes})`, async function () {
      const legacy = rootHops > 1;
      if (!legacy && !(await capabilities()).overlayLayersByFd) return skip(this, 'this kernel does not take detached mounts as overlay layers');
      if (legacy) process.env.IMGMOUNT_OVERLAY_LAYERS = 'dirs';
      try {
        await using img = await init(busyboxSif.path);
        const dir = registerMountPoint(mountDir('hops-tmpfs'));
        const { value: r, count: mounted } = await countHops(() => root(img, dir, { writableTmpfs: true }));
        try {
          within('root({ writableTmpfs })', mounted, rootHops);
          fs.writeFileSync(path.join(dir, 'written'), 'x');
        } finally {
          const record = await mountRecordFile(r.root.path);
          expect(fs.existsSync(record), 'the root is recorded').to.equal(true);
          const { count: released } = await countHops(() => r.close());
          within('root.close()', released, closeHops);
          expect(fs.existsSync(record), `the record is removed ${goes}`).to.equal(false);
        }
      } finally {
        delete process.env.IMGMOUNT_OVERLAY_LAYERS;
      }
    });
  }

  it('a FUSE root (squashfuse_ll with a passed /dev/fuse fd): root() 14, one of them the spawn (posix_spawn, off the JS thread), close() 4; no session directory', async () => {
    await using img = await init(busyboxSif.path);
    // Warm: the FUSE driver's module and its once-per-process probes (helpers, fd passing).
    const warm = registerMountPoint(mountDir('hops-fuse-warm'));
    await (await root(img, warm, { driver: 'fuse' })).close();
    const dir = registerMountPoint(mountDir('hops-fuse'));
    const { value: r, count: mounted } = await countHops(() => root(img, dir, { driver: 'fuse' }));
    try {
      expect(mounted.hops, `root({ driver: 'fuse' }): ${mounted.hops} hops (at most 14):\n    ${mounted.sites.join('\n    ')}`).to.be.at.most(14);
      expect(mounted.spawns, 'root() spawns the helper, nothing else').to.equal(1);
      expect(mounted.sites.some((s) => s.startsWith('1 x imgmount:spawn.program')), 'by posix_spawn, not by a fork of Node').to.equal(true);
      expect(r.mounts.map((m) => `${m.driver}:${m.fstype}`)).to.deep.equal(['fuse:fuse.squashfuse_ll']);
      expect(fs.existsSync(path.join(dir, 'bin', 'busybox')), 'the root is served').to.equal(true);
      // Its log is an unnamed file: no session directory to make, record and remove.
      const record = JSON.parse(fs.readFileSync(await mountRecordFile(r.root.path), 'utf8')) as { sessionDir?: string; helpers: unknown[] };
      expect(record.sessionDir).to.equal(undefined);
      expect(record.helpers).to.have.length(1);
    } finally {
      const { count: released } = await countHops(() => r.close());
      within('root.close()', released, 4);
    }
  });

  it("a root moved into another mount namespace: the namespace helper starts by posix_spawn, never a fork of Node, for root() and close()", async () => {
    const holder = await startNamespaceHolder(['-m', '--propagation', 'private']);
    const dir = mountDir('hops-namespace');
    try {
      await using img = await init(busyboxSif.path);
      const { value: r, count: mounted } = await countHops(() => root(img, dir, { driver: 'kernel', namespace: { pid: holder.pid! } }));
      try {
        expect(kernelMountsAt(dir, holder.pid!).map((m) => m.fstype), 'the root is there').to.deep.equal(['squashfs']);
        expect(mounted.spawns, `root() spawns the helper once:\n    ${mounted.sites.join('\n    ')}`).to.equal(1);
        expect(mounted.sites.some((s) => s.startsWith('1 x imgmount:spawn.program')), `by posix_spawn:\n    ${mounted.sites.join('\n    ')}`).to.equal(true);
      } finally {
        const { count: released } = await countHops(() => r.close());
        expect(released.sites.filter((s) => /PROCESSWRAP/.test(s)), 'close() forks nothing').to.deep.equal([]);
        expect(released.spawns, `close() spawns the helper once:\n    ${released.sites.join('\n    ')}`).to.equal(1);
      }
      expect(kernelMountsAt(dir, holder.pid!)).to.deep.equal([]);
    } finally {
      await stopHolder(holder);
    }
  });

  it('init() of a SIF whose partition lies beyond the first 64 KiB: one more hop for all its superblocks', async () => {
    const file = path.join(testTmp, 'hops-far-partition.sif');
    const squashfs = fs.readFileSync(fixture('sq-gzip.sqfs'));
    const w = await createSif(file, {
      objects: [
        { dataType: DataGeneric, name: 'padding', data: Buffer.alloc(256 * 1024, 0x5a) },
        { dataType: DataPartition, name: 'rootfs', data: squashfs, partition: { fsType: FsSquash, partType: PartPrimSys, arch: hostArch() } },
      ],
    });
    await w.close();
    let img: Image | undefined;
    try {
      const { value, count } = await countHops(() => init(file));
      img = value;
      expect(img.getRootFsPartition().offset, 'the partition is beyond the window').to.be.greaterThan(64 * 1024);
      within('init()', count, 2);
    } finally {
      await img?.close();
    }
  });
});
