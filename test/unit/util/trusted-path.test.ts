// The trust check (lib/util/trusted-path): which paths a privileged process may rely on.
import { expect } from 'chai';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { checkTrustedPath, checkTrustedPathSync } from '../../../lib/util/trusted-path';
import { testTmp } from '../../support/hooks';
import { skip } from '../../support/skip';

const isRoot = process.geteuid?.() === 0;
let n = 0;

/** A fresh directory under the run's scratch dir, with exactly `mode`. */
function dir(mode: number, parent = testTmp): string {
  const d = path.join(parent, `trust-${process.pid}-${n++}`);
  fs.mkdirSync(d);
  fs.chmodSync(d, mode);
  return d;
}

function skipUnlessRoot(ctx: Mocha.Context): void {
  if (!isRoot) {
    skip(ctx, 'not running as root (needs root to chown a file to another uid)');
  }
}

describe('trusted paths', () => {
  it('a 0755 directory of ours (root) is trusted, and the verdict gives its resolved path', async () => {
    const d = dir(0o755);
    const v = await checkTrustedPath(d);
    expect(v).to.deep.equal({ path: fs.realpathSync(d), reason: null });
    expect(checkTrustedPathSync(d)).to.deep.equal(v);
  });

  it('a 0777 directory is refused, and the reason names it and its mode', async () => {
    const d = dir(0o777);
    const v = await checkTrustedPath(d);
    expect(v.reason).to.equal(`${d} is writable by others (mode 0777)`);
    expect(checkTrustedPathSync(d).reason).to.equal(v.reason);
  });

  it('group-writable is refused too', async () => {
    const d = dir(0o775);
    expect((await checkTrustedPath(d)).reason).to.equal(`${d} is writable by group (mode 0775)`);
  });

  it('a safe file below a 0777 directory is refused for that ancestor', async () => {
    const open = dir(0o777);
    const file = path.join(open, 'f');
    fs.writeFileSync(file, 'x', { mode: 0o644 });
    expect((await checkTrustedPath(file)).reason).to.equal(`${open} is writable by others (mode 0777)`);
  });

  it('a sticky ancestor (like /tmp) is fine; the sticky directory itself is not', async () => {
    const sticky = dir(0o1777);
    const inside = dir(0o755, sticky);
    expect(await checkTrustedPath(inside)).to.deep.equal({ path: inside, reason: null });
    expect((await checkTrustedPath(sticky)).reason).to.equal(`${sticky} is writable by others (mode 1777)`);
  });

  it('a symlink at the end is refused unless followed; followed, its target is judged and returned', async () => {
    const d = dir(0o755);
    const target = dir(0o755);
    const link = path.join(d, 'link');
    fs.symlinkSync(target, link);
    expect((await checkTrustedPath(link)).reason).to.equal(`${link} is a symbolic link`);
    expect(await checkTrustedPath(link, { followFinal: true })).to.deep.equal({ path: target, reason: null });
    const open = dir(0o777);
    const bad = path.join(d, 'to-open');
    fs.symlinkSync(open, bad);
    expect((await checkTrustedPath(bad, { followFinal: true })).reason).to.equal(`${open} is writable by others (mode 0777)`);
  });

  it('symlinks above the object are resolved: the checked path is where they lead', async () => {
    const d = dir(0o755);
    const real = dir(0o755);
    fs.symlinkSync(real, path.join(d, 'via'));
    fs.writeFileSync(path.join(real, 'f'), 'x', { mode: 0o600 });
    expect(await checkTrustedPath(path.join(d, 'via', 'f'))).to.deep.equal({ path: path.join(real, 'f'), reason: null });
  });

  it('a missing path is refused with the error code', async () => {
    const v = await checkTrustedPath(path.join(testTmp, 'no-such-dir', 'x'));
    expect(v.reason).to.match(/no-such-dir cannot be examined \(ENOENT/);
    expect(v.code).to.equal('ENOENT');
  });

  it('a file owned by another uid is refused (root: chown)', async function () {
    skipUnlessRoot(this);
    const d = dir(0o755);
    const file = path.join(d, 'theirs');
    fs.writeFileSync(file, 'x', { mode: 0o755 });
    fs.chownSync(file, 4242, 4242);
    expect((await checkTrustedPath(file)).reason).to.equal(`${file} is owned by uid 4242, not root`);
    // For a process that is not root, its own files are fine, others' are not.
    expect((await checkTrustedPath(file, { euid: 4242 })).reason).to.equal(null);
    expect((await checkTrustedPath(file, { euid: 4343 })).reason).to.equal(`${file} is owned by uid 4242, not root or uid 4343`);
  });

  it('a directory owned by another uid is refused as an ancestor too (root: chown)', async function () {
    skipUnlessRoot(this);
    const d = dir(0o755);
    fs.chownSync(d, 4242, 4242);
    const file = path.join(d, 'f');
    fs.writeFileSync(file, 'x', { mode: 0o644 });
    expect((await checkTrustedPath(file)).reason).to.equal(`${d} is owned by uid 4242, not root`);
  });
});
