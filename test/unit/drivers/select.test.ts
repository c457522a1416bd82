// Driver selection as a decision of its inputs (lib/drivers/select.ts): decideDriver() given the
// facts chooseDriver() gathers (privilege, the kernel's filesystems, /dev/fuse, the image file's
// owner and mode, the squashfs superblock, the FUSE programs), without mounting or privilege.
// Every branch, with the driver, filesystem and reason (or error) spelled out. The kernel tests
// (test/kernel/drivers/selection.test.ts, env-overrides.test.ts) check chooseDriver() on the real host.
import { expect } from 'chai';
import { decideDriver, fuseConsidered, type DriverCapabilities, type DriverPolicy } from '../../../lib/drivers/select';
import { ImgmountError } from '../../../lib/errors';
import { ENCRYPTSQUASHFS, EXT3, GOCRYPTFSSQUASHFS, RAW, RootFsUsage, SANDBOX, SIF, SQUASHFS } from '../../../lib/image/constants';
import type { Section } from '../../../lib/image/section';
import { thrown as thrownOf } from '../../support/expect-error';

const thrown = (fn: () => unknown): ImgmountError => thrownOf(fn, ImgmountError);

const image = { path: '/images/a.sif' };
const part = (type: number, size = 4096): Section => ({ name: '!__rootfs__!', size, offset: 0, id: 3, type, allowedUsage: RootFsUsage });
const squashfs = part(SQUASHFS);
const ext3 = part(EXT3);
const gocryptfs = part(GOCRYPTFSSQUASHFS);

const programs = { squashfuse: '/usr/bin/squashfuse_ll', fuse2fs: '/usr/sbin/fuse2fs', gocryptfs: '/usr/bin/gocryptfs' };
const rootOwned = { uid: 0, gid: 0, mode: 0o100644 };
const userOwned = { uid: 1000, gid: 1000, mode: 0o100644 };

/** A root process on a host with everything: squashfs (gzip, xz), ext4, overlay, FUSE open to all. */
function caps(over: Partial<DriverCapabilities> = {}): DriverCapabilities {
  return {
    privileged: true,
    host: { filesystems: ['squashfs', 'ext4', 'overlay', 'fuse', 'tmpfs'], fuse: { available: true, unprivileged: true } },
    file: rootOwned,
    squashfs: { compression: 'gzip', bytesUsed: 4096 },
    kernelSquashfsCompressions: ['gzip', 'xz'],
    fuse: programs,
    ...over,
  };
}

const decide = (p: Section, policy: DriverPolicy, c: DriverCapabilities) => decideDriver(image, p, policy, c);

describe('drivers/select: decideDriver, kernel or FUSE from the facts alone', () => {
  describe('partitions no driver chooses between', () => {
    it('a sandbox is bound by the kernel driver, whatever the policy and the host', () => {
      for (const policy of [{}, { driver: 'fuse' as const }]) {
        expect(decide(part(SANDBOX), policy, { privileged: false, host: { filesystems: [], fuse: { available: false, unprivileged: false } } })).to.deep.equal({
          driver: 'kernel',
          filesystem: 'sandbox',
          reason: 'sandbox directories are bind-mounted',
        });
      }
    });

    it('raw data is ERR_MOUNT_UNSUPPORTED_FS naming the partition and its id', () => {
      const e = thrown(() => decide(part(RAW), {}, caps()));
      expect(e.code).to.equal('ERR_MOUNT_UNSUPPORTED_FS');
      expect(e.message).to.equal('partition "!__rootfs__!" (id 3) of /images/a.sif is raw data, not a filesystem');
    });

    it('a LUKS-encrypted squashfs is ERR_ENCRYPTION_UNSUPPORTED', () => {
      const e = thrown(() => decide(part(ENCRYPTSQUASHFS), {}, caps()));
      expect(e.code).to.equal('ERR_ENCRYPTION_UNSUPPORTED');
      expect(e.message).to.match(/^cannot mount the encrypted \(LUKS\) squashfs at \/images\/a\.sif: it needs device-mapper \(dm-crypt\) and root, /);
    });

    it('any other type is ERR_MOUNT_UNSUPPORTED_FS with its name', () => {
      const e = thrown(() => decide(part(SIF), {}, caps()));
      expect(e.code).to.equal('ERR_MOUNT_UNSUPPORTED_FS');
      expect(e.message).to.equal('cannot mount a partition of type sif');
      expect(thrown(() => decide(part(0x2222), {}, caps())).message).to.equal('cannot mount a partition of type unknown(0x2222)');
    });
  });

  describe('squashfs', () => {
    it('root, a root-owned file, a kernel that reads the compression: the kernel', () => {
      expect(decide(squashfs, {}, caps())).to.deep.equal({
        driver: 'kernel',
        filesystem: 'squashfs',
        reason: 'the kernel reads gzip squashfs (the image file is owned by root and writable by no one else)',
      });
    });

    it('a file a user can write: squashfuse, saying why (CVE-2023-30549) and what would let the kernel', () => {
      expect(decide(squashfs, {}, caps({ file: userOwned }))).to.deep.equal({
        driver: 'fuse',
        filesystem: 'squashfs',
        reason:
          'the image file is writable by uid 1000 (owner 1000, mode 0644), so /usr/bin/squashfuse_ll (FUSE) parses it (CVE-2023-30549); pass trusted: true to let the kernel',
      });
      expect(decide(squashfs, { trusted: true }, caps({ file: userOwned })).reason).to.equal('the kernel reads gzip squashfs (the caller trusts the image)');
      expect(decide(squashfs, { allowKernelSquashfs: true }, caps({ file: userOwned })).reason).to.equal('the kernel reads gzip squashfs (allowKernelSquashfs: true)');
    });

    it('allowKernelSquashfs: false sends even a root-owned file to squashfuse', () => {
      expect(decide(squashfs, { allowKernelSquashfs: false }, caps()).reason).to.equal(
        '/usr/bin/squashfuse_ll (FUSE), since policy forbids kernel mounts of squashfs images (allowKernelSquashfs: false)',
      );
    });

    it('the kernel cannot: no squashfs, not that compression, a partial last sector', () => {
      expect(decide(squashfs, {}, caps({ host: { filesystems: ['ext4', 'fuse'], fuse: { available: true, unprivileged: true } } }))).to.deep.equal({
        driver: 'fuse',
        filesystem: 'squashfs',
        reason: '/usr/bin/squashfuse_ll (FUSE), since the kernel has no squashfs',
      });
      expect(decide(squashfs, {}, caps({ squashfs: { compression: 'zstd', bytesUsed: 4096 } })).reason).to.equal(
        "/usr/bin/squashfuse_ll (FUSE), since the kernel's squashfs cannot decompress zstd (it reads gzip, xz)",
      );
      // 4000 bytes in a 4000-byte partition: the loop device shows 3584 (7 sectors).
      expect(decide(part(SQUASHFS, 4000), {}, caps({ squashfs: { compression: 'gzip', bytesUsed: 4000 } })).reason).to.equal(
        '/usr/bin/squashfuse_ll (FUSE), since the filesystem ends in a partial sector (4000 bytes used) and a loop device shows whole 512-byte sectors only',
      );
      // Used bytes within the whole sectors are fine even when the partition is not sector-sized.
      expect(decide(part(SQUASHFS, 4000), {}, caps({ squashfs: { compression: 'gzip', bytesUsed: 3584 } })).driver).to.equal('kernel');
    });

    it("the policy's compression lists win over the host's (and need no kernel probe)", () => {
      const noProbe = caps({ kernelSquashfsCompressions: undefined });
      expect(decide(squashfs, { kernelSquashfsCompressions: ['zstd'] }, noProbe).reason).to.equal(
        "/usr/bin/squashfuse_ll (FUSE), since the kernel's squashfs cannot decompress gzip (it reads zstd)",
      );
      const e = thrown(() => decide(squashfs, { kernelSquashfsCompressions: ['xz'], fuseSquashfsCompressions: ['lz4'] }, noProbe));
      expect(e.code).to.equal('ERR_NO_DRIVER');
      expect(e.message).to.equal(
        'no driver can mount squashfs partition "!__rootfs__!" of /images/a.sif: ' +
          "kernel: the kernel's squashfs cannot decompress gzip (it reads xz); FUSE: squashfuse cannot decompress gzip (it reads lz4)",
      );
      expect(e.path).to.equal('/images/a.sif');
      expect(e.details).to.deep.equal({ partition: '!__rootfs__!', filesystem: 'squashfs' });
    });

    it('squashfuse reads lzo, xz, lz4 and zstd by default, not lzma', () => {
      const kernelCannot = caps({ kernelSquashfsCompressions: [] });
      for (const comp of ['gzip', 'lzo', 'xz', 'lz4', 'zstd']) {
        expect(decide(squashfs, {}, { ...kernelCannot, squashfs: { compression: comp, bytesUsed: 4096 } }).driver, comp).to.equal('fuse');
      }
    });

    it('legacy lzma nothing reads: ERR_MOUNT_UNSUPPORTED_COMPRESSION in auto, saying what would read it', () => {
      const lzma = caps({ squashfs: { compression: 'lzma', bytesUsed: 4096 } });
      const e = thrown(() => decide(squashfs, {}, lzma));
      expect(e.code).to.equal('ERR_MOUNT_UNSUPPORTED_COMPRESSION');
      expect(e.message).to.equal(
        'partition "!__rootfs__!" of /images/a.sif is squashfs compressed with legacy lzma, which nothing here reads: ' +
          "the kernel's squashfs cannot decompress lzma (it reads gzip, xz); squashfuse cannot decompress lzma (it reads gzip, lzo, xz, lz4, zstd). " +
          'A squashfuse built with liblzma reads it, or convert it: unsquashfs, then mksquashfs -comp xz',
      );
      expect(e.details).to.deep.equal({ compression: 'lzma' });
      // Insisting on a driver gives that driver's refusal instead.
      expect(thrown(() => decide(squashfs, { driver: 'fuse' }, lzma)).message).to.equal(
        'no fuse driver can mount squashfs partition "!__rootfs__!" of /images/a.sif: squashfuse cannot decompress lzma (it reads gzip, lzo, xz, lz4, zstd)',
      );
      // A squashfuse said to read lzma does.
      expect(decide(squashfs, { fuseSquashfsCompressions: ['lzma'] }, lzma).driver).to.equal('fuse');
    });

    it("driver 'kernel' trusts the image, needs no FUSE programs, and fails saying why the kernel cannot", () => {
      expect(decide(squashfs, { driver: 'kernel' }, caps({ file: userOwned, fuse: undefined }))).to.deep.equal({
        driver: 'kernel',
        filesystem: 'squashfs',
        reason: "the kernel reads gzip squashfs (driver 'kernel' asked: the caller trusts the image)",
      });
      const e = thrown(() => decide(squashfs, { driver: 'kernel' }, caps({ privileged: false, file: undefined, fuse: undefined })));
      expect(e.code).to.equal('ERR_NO_DRIVER');
      expect(e.message).to.equal('no kernel driver can mount squashfs partition "!__rootfs__!" of /images/a.sif: mounting needs root (CAP_SYS_ADMIN)');
      expect(thrown(() => decide(squashfs, { driver: 'kernel', allowKernelSquashfs: false }, caps())).message).to.equal(
        'no kernel driver can mount squashfs partition "!__rootfs__!" of /images/a.sif: policy forbids kernel mounts of squashfs images (allowKernelSquashfs: false)',
      );
    });

    it("driver 'fuse' takes squashfuse even when the kernel could, and fails when it is not installed", () => {
      expect(decide(squashfs, { driver: 'fuse' }, caps())).to.deep.equal({ driver: 'fuse', filesystem: 'squashfs', reason: '/usr/bin/squashfuse_ll (FUSE)' });
      expect(thrown(() => decide(squashfs, { driver: 'fuse' }, caps({ fuse: { ...programs, squashfuse: null } }))).message).to.equal(
        'no fuse driver can mount squashfs partition "!__rootfs__!" of /images/a.sif: squashfuse is not installed',
      );
    });

    it('unprivileged: FUSE when /dev/fuse is open to all (or the policy says so), else no driver', () => {
      const user = caps({ privileged: false, file: undefined });
      expect(decide(squashfs, {}, user)).to.deep.equal({
        driver: 'fuse',
        filesystem: 'squashfs',
        reason: '/usr/bin/squashfuse_ll (FUSE), since mounting needs root (CAP_SYS_ADMIN)',
      });
      const closed = { ...user, host: { ...user.host, fuse: { available: true, unprivileged: false } } };
      expect(thrown(() => decide(squashfs, {}, closed)).message).to.equal(
        'no driver can mount squashfs partition "!__rootfs__!" of /images/a.sif: kernel: mounting needs root (CAP_SYS_ADMIN); FUSE: /dev/fuse is not open to unprivileged users here',
      );
      expect(decide(squashfs, { fuseUnprivileged: true }, closed).driver).to.equal('fuse');
      expect(thrown(() => decide(squashfs, { fuseUnprivileged: false }, user)).code).to.equal('ERR_NO_DRIVER');
      const noFuse = { ...user, host: { filesystems: ['squashfs'], fuse: { available: false, unprivileged: false } } };
      expect(thrown(() => decide(squashfs, {}, noFuse)).message).to.equal(
        'no driver can mount squashfs partition "!__rootfs__!" of /images/a.sif: kernel: mounting needs root (CAP_SYS_ADMIN); FUSE: the kernel has no FUSE (/dev/fuse missing)',
      );
    });

    it('root needs no open /dev/fuse', () => {
      const closed = caps({ file: userOwned, host: { filesystems: ['squashfs', 'fuse'], fuse: { available: true, unprivileged: false } } });
      expect(decide(squashfs, {}, closed).driver).to.equal('fuse');
    });
  });

  describe('ext3', () => {
    it('by default fuse2fs, even for root and a root-owned file (CVE-2023-30549)', () => {
      expect(decide(ext3, {}, caps())).to.deep.equal({
        driver: 'fuse',
        filesystem: 'ext3',
        reason:
          'the image is not marked trusted, so /usr/sbin/fuse2fs (FUSE) parses it (CVE-2023-30549); pass trusted: true or allowKernelExtfs: true to let the kernel',
      });
    });

    it('trusted: the kernel, through ext3 or ext4', () => {
      expect(decide(ext3, { trusted: true }, caps())).to.deep.equal({ driver: 'kernel', filesystem: 'ext3', reason: 'the kernel reads ext3 (the caller trusts the image)' });
      const ext3Only = caps({ host: { filesystems: ['ext3'], fuse: { available: true, unprivileged: true } } });
      expect(decide(ext3, { allowKernelExtfs: true }, ext3Only).reason).to.equal('the kernel reads ext3 (allowKernelExtfs: true)');
      const neither = caps({ host: { filesystems: ['squashfs', 'fuse'], fuse: { available: true, unprivileged: true } } });
      expect(decide(ext3, { trusted: true }, neither).reason).to.equal('/usr/sbin/fuse2fs (FUSE), since the kernel has no ext3/ext4');
    });

    it('no fuse2fs: no driver, with both reasons; insisting on FUSE says only that', () => {
      const none = caps({ fuse: { ...programs, fuse2fs: null } });
      expect(thrown(() => decide(ext3, {}, none)).message).to.equal(
        'no driver can mount ext3 partition "!__rootfs__!" of /images/a.sif: kernel: the image is not marked trusted, so the kernel may not parse it (CVE-2023-30549); ' +
          'pass trusted: true or allowKernelExtfs: true to let the kernel; FUSE: fuse2fs is not installed',
      );
      expect(thrown(() => decide(ext3, { driver: 'fuse' }, none)).message).to.equal(
        'no fuse driver can mount ext3 partition "!__rootfs__!" of /images/a.sif: fuse2fs is not installed',
      );
      expect(decide(ext3, { driver: 'kernel' }, none)).to.deep.equal({
        driver: 'kernel',
        filesystem: 'ext3',
        reason: "the kernel reads ext3 (driver 'kernel' asked: the caller trusts the image)",
      });
    });
  });

  describe('gocryptfs', () => {
    it('always FUSE: gocryptfs over squashfuse', () => {
      expect(decide(gocryptfs, {}, caps())).to.deep.equal({
        driver: 'fuse',
        filesystem: 'gocryptfs',
        reason: '/usr/bin/gocryptfs (FUSE), since gocryptfs is a FUSE filesystem',
      });
      expect(decide(gocryptfs, { driver: 'fuse' }, caps()).reason).to.equal('/usr/bin/gocryptfs (FUSE)');
    });

    it('names the program that is missing, and refuses the kernel', () => {
      expect(thrown(() => decide(gocryptfs, {}, caps({ fuse: { ...programs, gocryptfs: null } }))).message).to.equal(
        'no driver can mount gocryptfs partition "!__rootfs__!" of /images/a.sif: kernel: gocryptfs is a FUSE filesystem; FUSE: gocryptfs is not installed',
      );
      expect(thrown(() => decide(gocryptfs, {}, caps({ fuse: { ...programs, squashfuse: null } }))).message).to.equal(
        'no driver can mount gocryptfs partition "!__rootfs__!" of /images/a.sif: kernel: gocryptfs is a FUSE filesystem; FUSE: squashfuse is not installed',
      );
      expect(thrown(() => decide(gocryptfs, { driver: 'kernel' }, caps())).message).to.equal(
        'no kernel driver can mount gocryptfs partition "!__rootfs__!" of /images/a.sif: gocryptfs is a FUSE filesystem',
      );
    });
  });

  describe('which facts the decision needs', () => {
    it('fuseConsidered: gocryptfs always; squashfs and ext3 unless the kernel is insisted on or, in auto, can', () => {
      expect(fuseConsidered(gocryptfs, { driver: 'kernel' }, caps())).to.equal(true);
      expect(fuseConsidered(part(SANDBOX), {}, caps())).to.equal(false);
      expect(fuseConsidered(squashfs, {}, caps())).to.equal(false);
      expect(fuseConsidered(squashfs, {}, caps({ file: userOwned }))).to.equal(true);
      expect(fuseConsidered(squashfs, { driver: 'kernel' }, caps({ file: userOwned }))).to.equal(false);
      expect(fuseConsidered(squashfs, { driver: 'fuse' }, caps())).to.equal(true);
      expect(fuseConsidered(ext3, {}, caps())).to.equal(true);
      expect(fuseConsidered(ext3, { trusted: true }, caps())).to.equal(false);
    });

    it('a fact left out that the decision needs is a plain Error naming it, not a refusal', () => {
      expect(() => decide(squashfs, {}, caps({ file: undefined }))).to.throw(Error, 'chooseDriver: capabilities.file is needed for this partition');
      expect(() => decide(squashfs, {}, caps({ squashfs: undefined }))).to.throw(Error, 'chooseDriver: capabilities.squashfs is needed for this partition');
      expect(() => decide(squashfs, {}, caps({ kernelSquashfsCompressions: undefined }))).to.throw(Error, 'capabilities.kernelSquashfsCompressions');
      expect(() => decide(ext3, {}, caps({ fuse: undefined }))).to.throw(Error, 'chooseDriver: capabilities.fuse is needed for this partition');
      // Unprivileged, the file is never looked at.
      expect(decide(squashfs, {}, caps({ privileged: false, file: undefined })).driver).to.equal('fuse');
    });
  });
});
