// root()'s one-hop plain root (the target's pin and the record's intent ride in the mount's
// native call) decides on facts it checks again in that call, and gives way to the general
// path, with nothing done, wherever that call cannot do it:
//  - the image file changed owner or mode after init(): the driver is chosen again from a fresh
//    fstat (a file given away to a user is parsed by FUSE, CVE-2023-30549);
//  - a target reached through a symlink: mounted at the real directory, recorded under its name;
//  - shared loop devices: bound on their own, the target pinned on its own.
import { expect } from 'chai';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { init } from '../../../lib/image/init';
import { mountRecordFile } from '../../../lib/drivers/mount-record';
import { root } from '../../../lib/root/root';
import { busyboxSif } from '../../support/images';
import { requireKernel } from '../../support/kernel';
import { restoreEnv, setEnv } from '../../support/forgery';
import { leftovers, scene } from '../../support/scene';
import { countHops } from '../../support/hops';

describe('kernel: the one-hop plain root gives way where it must', function () {
  this.timeout(30_000);
  before(function () {
    requireKernel(this);
  });
  afterEach(() => restoreEnv());

  const setUp = (name: string) => {
    const s = scene(name);
    setEnv('IMGMOUNT_STATE_DIR', s.state);
    const image = path.join(s.dir, 'busybox.sif');
    fs.copyFileSync(busyboxSif.path, image);
    fs.chownSync(image, 0, 0);
    fs.chmodSync(image, 0o644);
    return { s, image };
  };

  for (const [what, change] of [
    ['given to uid 65534', (f: string) => fs.chownSync(f, 65534, 65534)],
    ['made writable by everyone', (f: string) => fs.chmodSync(f, 0o646)],
  ] as const) {
    it(`an image file ${what} after init(): chosen again, by FUSE (the kernel never parses it)`, async () => {
      const { s, image } = setUp('in-hop-owner');
      const target = s.target('root');
      {
        await using img = await init(image);
        change(image);
        await using r = await root(img, target);
        expect(r.mounts.map((m) => m.driver)).to.deep.equal(['fuse']);
        expect(fs.existsSync(path.join(target, 'bin', 'busybox'))).to.equal(true);
      }
      // Control: unchanged, the same image is mounted by the kernel in one hop.
      fs.chownSync(image, 0, 0);
      fs.chmodSync(image, 0o644);
      {
        await using img = await init(image);
        const { value: r, count } = await countHops(() => root(img, target));
        await using _r = r;
        expect(r.mounts.map((m) => m.driver)).to.deep.equal(['kernel']);
        expect(count.hops, count.sites.join('\n')).to.equal(1);
      }
      expect(await leftovers(s, process.pid)).to.deep.equal([]);
    });
  }

  it('a target reached through a symlink: mounted at the real directory and recorded under its name', async () => {
    const { s, image } = setUp('in-hop-link');
    const real = s.target('real');
    const link = path.join(s.dir, 'link');
    fs.symlinkSync(real, link);
    {
      await using img = await init(image);
      await using r = await root(img, link);
      expect(r.root.path).to.equal(real);
      expect(r.mounts.map((m) => m.driver)).to.deep.equal(['kernel']);
      expect(fs.existsSync(await mountRecordFile(real)), 'recorded under the real name').to.equal(true);
      expect(fs.existsSync(await mountRecordFile(path.resolve(link))), 'not under the link').to.equal(false);
    }
    expect(await leftovers(s, process.pid)).to.deep.equal([]);
  });

  it('shareLoopDevice: two roots of one image share a device (bound on its own, the targets pinned on their own)', async () => {
    const { s, image } = setUp('in-hop-shared');
    {
      await using img = await init(image);
      await using a = await root(img, s.target('a'), { shareLoopDevice: true });
      await using b = await root(img, s.target('b'), { shareLoopDevice: true });
      expect(a.mounts[0]!.loopDevice).to.be.a('string');
      expect(b.mounts[0]!.loopDevice).to.equal(a.mounts[0]!.loopDevice);
    }
    expect(await leftovers(s, process.pid)).to.deep.equal([]);
  });
});
