// Attack class 7, the kernel's filesystem parsers (Apptainer CVE-2023-30549): the trust rule
// that decides whether the kernel may parse an image, fed the owner and mode that
// chooseDriver reads from the image's open fd. The kernel tests check the real thing.
import { expect } from 'chai';
import { kernelTrust, type DriverPolicy, type ImageFileOwnership } from '../../../lib/drivers/select';

const S_IFREG = 0o100000;
const S_IFBLK = 0o060000;
const file = (uid: number, perm: number, gid = uid, type = S_IFREG): ImageFileOwnership => ({ uid, gid, mode: type | perm });
const rootOnly = file(0, 0o644);
const userOwned = file(1000, 0o644);

describe('driver policy: which images the kernel may parse', () => {
  it('ext3: never by default, whoever owns the file; trusted, allowKernelExtfs or driver kernel let the kernel', () => {
    for (const f of [rootOnly, userOwned]) {
      const t = kernelTrust('ext3', {}, f);
      expect(t.ok).to.equal(false);
      expect(t.why).to.equal(
        'the image is not marked trusted, so the kernel may not parse it (CVE-2023-30549); pass trusted: true or allowKernelExtfs: true to let the kernel',
      );
      expect(t.untrusted).to.deep.equal({ cause: 'the image is not marked trusted', hint: 'pass trusted: true or allowKernelExtfs: true to let the kernel' });
    }
    expect(kernelTrust('ext3', { trusted: true }, userOwned)).to.deep.equal({ ok: true, why: 'the caller trusts the image' });
    expect(kernelTrust('ext3', { allowKernelExtfs: true }, userOwned)).to.deep.equal({ ok: true, why: 'allowKernelExtfs: true' });
    expect(kernelTrust('ext3', { driver: 'kernel' }, userOwned).ok).to.equal(true);
    expect(kernelTrust('ext3', { driver: 'fuse' }, rootOnly).ok).to.equal(false);
    // The squashfs knob says nothing about ext3.
    expect(kernelTrust('ext3', { allowKernelSquashfs: true }, rootOnly).ok).to.equal(false);
  });

  it('squashfs: the kernel for a file only root can write (setuid, sticky and exec bits aside)', () => {
    for (const perm of [0o644, 0o444, 0o600, 0o755, 0o4755, 0o1644]) {
      expect(kernelTrust('squashfs', {}, file(0, perm)), perm.toString(8)).to.deep.equal({
        ok: true,
        why: 'the image file is owned by root and writable by no one else',
      });
    }
  });

  const untrustedFiles: Array<[string, ImageFileOwnership, RegExp]> = [
    ['owned by nobody', file(65534, 0o644), /^the image file is writable by uid 65534 \(owner 65534, mode 0644\)/],
    ['owned by a user, read-only mode (the owner can chmod it)', file(1000, 0o444), /^the image file is writable by uid 1000 \(owner 1000, mode 0444\)/],
    ['root-owned, mode 0666', file(0, 0o666), /^the image file is writable by group 0 and everyone \(owner 0, mode 0666\)/],
    ['root-owned, group-writable (or an ACL granting a user write: the mask is in the group bits)', file(0, 0o664, 50), /^the image file is writable by group 50 \(owner 0, mode 0664\)/],
    ['root-owned, world-writable only', file(0, 0o642), /^the image file is writable by everyone/],
    ['a block device writable by group disk', file(0, 0o660, 6, S_IFBLK), /^the image file is writable by group 6 \(owner 0, mode 0660\)/],
  ];
  for (const [what, f, cause] of untrustedFiles) {
    it(`squashfs ${what}: FUSE, saying why and what would let the kernel`, () => {
      const t = kernelTrust('squashfs', {}, f);
      expect(t.ok).to.equal(false);
      expect(t.why).to.match(cause);
      expect(t.why).to.match(/, so the kernel may not parse it \(CVE-2023-30549\); pass trusted: true to let the kernel$/);
      expect(t.untrusted?.hint).to.equal('pass trusted: true to let the kernel');
      expect(kernelTrust('squashfs', { trusted: true }, f).ok).to.equal(true);
      expect(kernelTrust('squashfs', { allowKernelSquashfs: true }, f).ok).to.equal(true);
      expect(kernelTrust('squashfs', { driver: 'kernel' }, f)).to.deep.equal({ ok: true, why: "driver 'kernel' asked: the caller trusts the image" });
    });
  }

  it('allowKernel*: false wins over trusted and over driver kernel, naming the option', () => {
    const cases: Array<['squashfs' | 'ext3', DriverPolicy]> = [
      ['squashfs', { allowKernelSquashfs: false }],
      ['squashfs', { allowKernelSquashfs: false, trusted: true }],
      ['squashfs', { allowKernelSquashfs: false, driver: 'kernel' }],
      ['ext3', { allowKernelExtfs: false, trusted: true }],
      ['ext3', { allowKernelExtfs: false, driver: 'kernel' }],
    ];
    for (const [fs, policy] of cases) {
      const option = fs === 'squashfs' ? 'allowKernelSquashfs' : 'allowKernelExtfs';
      expect(kernelTrust(fs, policy, rootOnly), JSON.stringify(policy)).to.deep.equal({
        ok: false,
        why: `policy forbids kernel mounts of ${fs} images (${option}: false)`,
      });
    }
  });
});
