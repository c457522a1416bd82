// bindMount() with both mount APIs: the safe defaults (read-only, nosuid, nodev, private), the
// attributes asked for, recursive or not (a submount of the source), and into another mount
// namespace. What is mounted is read from /proc/PID/mountinfo by the test itself; everything is
// unmounted with umount(8).
import { expect } from 'chai';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { bindMount } from '../../../lib/mount';
import { testTmp } from '../../support/hooks';
import { mountDir } from '../../support/images';
import { requireKernel, startNamespaceHolder, stopHolder } from '../../support/kernel';
import { kernelMountsAt } from '../../support/kernel-mountinfo';
import { registerMountPoint } from '../../support/leaks';

let sources = 0;
/** A source directory with a file, and a noexec tmpfs mounted on its sub/ (a submount). */
function sourceTree(): { dir: string; sub: string } {
  const dir = path.join(testTmp, `bind-src-${++sources}`);
  fs.mkdirSync(path.join(dir, 'sub'), { recursive: true });
  fs.writeFileSync(path.join(dir, 'file.txt'), 'bound\n');
  const sub = registerMountPoint(path.join(dir, 'sub'));
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=64k,noexec', 'imgmount-bind-sub', sub]);
  fs.writeFileSync(path.join(sub, 'in-sub.txt'), 'submount\n');
  return { dir, sub };
}

function unmountTree(dir: string): void {
  if (kernelMountsAt(dir).length) execFileSync('umount', ['-R', dir]);
}

describe('kernel: bindMount', function () {
  before(function () {
    requireKernel(this);
  });

  for (const api of ['new', 'legacy'] as const) {
    describe(`api '${api}'`, () => {
      it('defaults: read-only, nosuid, nodev, private, recursive: the submount comes along, read-only too', async () => {
        const src = sourceTree();
        const t = registerMountPoint(mountDir(`bind-${api}`));
        try {
          expect(await bindMount(src.dir, t, { api })).to.equal(api);
          const [m] = kernelMountsAt(t);
          expect(m, 'a mount at the target').to.not.equal(undefined);
          expect(m!.mountOptions).to.include.members(['ro', 'nosuid', 'nodev']);
          expect(m!.mountOptions).to.not.include('noexec');
          const [sub] = kernelMountsAt(path.join(t, 'sub'));
          expect(sub?.fstype).to.equal('tmpfs');
          // Made safe like the top, keeping what it had (noexec): attributes are only ever added.
          expect(sub!.mountOptions).to.include.members(['ro', 'nosuid', 'nodev', 'noexec']);
          // Private: no shared:N peer group with the source.
          const raw = fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n').find((l) => l.split(' ')[4] === t)!;
          expect(raw.split(' - ')[0]!.split(' ').slice(6)).to.deep.equal([]);
          expect(fs.readFileSync(path.join(t, 'file.txt'), 'utf8')).to.equal('bound\n');
          expect(fs.readFileSync(path.join(t, 'sub/in-sub.txt'), 'utf8')).to.equal('submount\n');
          expect(() => fs.writeFileSync(path.join(t, 'new.txt'), 'x')).to.throw(/EROFS/);
          expect(() => fs.writeFileSync(path.join(t, 'sub/new.txt'), 'x')).to.throw(/EROFS/);
          // The source itself stays writable.
          fs.writeFileSync(path.join(src.dir, 'new.txt'), 'x');
          expect(fs.readFileSync(path.join(t, 'new.txt'), 'utf8')).to.equal('x');
        } finally {
          unmountTree(t);
          unmountTree(src.sub);
        }
        expect(kernelMountsAt(t)).to.deep.equal([]);
      });

      it('readOnly: false, nosuid: false, noexec: true, recursive: false: those attributes, and no submount', async () => {
        const src = sourceTree();
        const t = registerMountPoint(mountDir(`bind-${api}-rw`));
        try {
          expect(await bindMount(src.dir, t, { api, readOnly: false, nosuid: false, noexec: true, recursive: false })).to.equal(api);
          const [m] = kernelMountsAt(t);
          expect(m!.mountOptions).to.include.members(['rw', 'nodev', 'noexec']);
          expect(m!.mountOptions).to.not.include('nosuid');
          expect(kernelMountsAt(path.join(t, 'sub'))).to.deep.equal([]);
          expect(fs.readdirSync(path.join(t, 'sub'))).to.deep.equal([]); // the directory below the tmpfs
          fs.writeFileSync(path.join(t, 'written.txt'), 'through the bind\n');
          expect(fs.readFileSync(path.join(src.dir, 'written.txt'), 'utf8')).to.equal('through the bind\n');
        } finally {
          unmountTree(t);
          unmountTree(src.sub);
        }
      });
    });
  }

  it("namespace: the bind lands in that process's mount namespace, not here", async () => {
    const src = sourceTree();
    const holder = await startNamespaceHolder(['-m', '--propagation', 'private']);
    const t = mountDir('bind-ns');
    try {
      expect(await bindMount(src.dir, t, { namespace: { pid: holder.pid! } })).to.equal('new');
      const [m] = kernelMountsAt(t, holder.pid!);
      expect(m!.mountOptions).to.include.members(['ro', 'nosuid', 'nodev']);
      expect(kernelMountsAt(t)).to.deep.equal([]);
      expect(fs.readFileSync(`/proc/${holder.pid}/root${t}/file.txt`, 'utf8')).to.equal('bound\n');
      expect(fs.readFileSync(`/proc/${holder.pid}/root${t}/sub/in-sub.txt`, 'utf8')).to.equal('submount\n');
    } finally {
      await stopHolder(holder);
      unmountTree(src.sub);
    }
  });
});
