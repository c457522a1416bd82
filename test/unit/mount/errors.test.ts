// mapMountError (lib/mount/errors.ts): which failed mount steps mean something Apptainer has a
// message for, with the ERR_* code, the SystemError as `cause`, and the errno, step, fstype,
// target and kernel messages in `details`; everything else comes back as it was.
import { expect } from 'chai';
import { ImgmountError, SystemError } from '../../../lib/errors';
import { mapMountError } from '../../../lib/mount/errors';

const ENODEV = 19;
const EINVAL = 22;
const EPERM = 1;

function mapped(err: SystemError, ctx: Parameters<typeof mapMountError>[1]): ImgmountError {
  const out = mapMountError(err, ctx);
  expect(out).to.be.instanceOf(ImgmountError);
  expect((out as ImgmountError).cause, 'the SystemError is the cause').to.equal(err);
  return out as ImgmountError;
}

describe('mount/errors: mapMountError', () => {
  it('leaves what is not a SystemError alone, the same object', () => {
    const plain = new Error('no');
    expect(mapMountError(plain, { fstype: 'squashfs' })).to.equal(plain);
    expect(mapMountError('text', { fstype: 'squashfs' })).to.equal('text');
    const ours = new ImgmountError('ERR_MOUNT_FAILED', 'already ours');
    expect(mapMountError(ours, { fstype: 'ext3' })).to.equal(ours);
  });

  it('ENODEV from fsopen or mount(2): the filesystem is not in the kernel (ERR_MOUNT_UNSUPPORTED_FS)', () => {
    for (const syscall of ['fsopen', 'mount']) {
      const err = new SystemError({ errno: ENODEV, syscall });
      const e = mapped(err, { fstype: 'squashfs', source: '/dev/loop3', target: '/mnt/x' });
      expect(e.code).to.equal('ERR_MOUNT_UNSUPPORTED_FS');
      expect(e.message).to.equal('squashfs filesystem seems not enabled and/or supported by your kernel');
      expect(e.path).to.equal('/dev/loop3');
      expect(e.details).to.deep.equal({ errno: -19, syscall, fstype: 'squashfs', target: '/mnt/x' });
    }
    // ENODEV elsewhere is something else.
    const other = new SystemError({ errno: ENODEV, syscall: 'fsconfig(FSCONFIG_SET_FD)' });
    expect(mapMountError(other, { fstype: 'squashfs' })).to.equal(other);
  });

  it('EINVAL from mount_setattr(MOUNT_ATTR_IDMAP): no ID-mapped mounts of that filesystem (ERR_IDMAP_UNSUPPORTED), ext3 told to use ext4', () => {
    const err = new SystemError({ errno: EINVAL, syscall: 'mount_setattr(MOUNT_ATTR_IDMAP)' });
    const ext3 = mapped(err, { fstype: 'ext3', target: '/mnt/r' });
    expect(ext3.code).to.equal('ERR_IDMAP_UNSUPPORTED');
    expect(ext3.message).to.equal(
      "the ext3 filesystem does not support ID-mapped mounts on this kernel; mount ext3 images with fstype 'ext4' (the ext4 driver reads them and supports ID maps)",
    );
    expect(ext3.path, 'no source given').to.equal(undefined);
    expect(ext3.details).to.deep.equal({ errno: -22, syscall: 'mount_setattr(MOUNT_ATTR_IDMAP)', fstype: 'ext3', target: '/mnt/r' });
    expect(mapped(err, { fstype: 'squashfs' }).message).to.equal('the squashfs filesystem does not support ID-mapped mounts on this kernel');
  });

  it('EINVAL creating the superblock, with a kernel message about compression: ERR_MOUNT_UNSUPPORTED_COMPRESSION, the kernel quoted', () => {
    for (const syscall of ['mount', 'fsconfig(FSCONFIG_CMD_CREATE)', 'fsmount']) {
      const kernelMessages = ['e squashfs: Filesystem uses "zstd" compression. This is not supported'];
      const err = new SystemError({ errno: EINVAL, syscall, kernelMessages });
      const e = mapped(err, { fstype: 'squashfs', source: '/dev/loop1', target: '/t' });
      expect(e.code).to.equal('ERR_MOUNT_UNSUPPORTED_COMPRESSION');
      expect(e.message).to.equal(
        'squashfs image partition uses a compression algorithm this kernel does not support (kernel: e squashfs: Filesystem uses "zstd" compression. This is not supported)',
      );
      expect(e.details).to.deep.equal({ errno: -22, syscall, fstype: 'squashfs', target: '/t', kernelMessages });
    }
    const unsupported = new SystemError({ errno: EINVAL, syscall: 'fsmount', kernelMessages: ['Unsupported Compression type'] });
    expect(mapped(unsupported, { fstype: 'squashfs' }).code).to.equal('ERR_MOUNT_UNSUPPORTED_COMPRESSION');
  });

  it('EINVAL creating the superblock otherwise: a bad superblock (ERR_MOUNT_BAD_SUPERBLOCK), in squashfs words or in general', () => {
    const sq = mapped(new SystemError({ errno: EINVAL, syscall: 'fsconfig(FSCONFIG_CMD_CREATE)' }), { fstype: 'squashfs' });
    expect(sq.code).to.equal('ERR_MOUNT_BAD_SUPERBLOCK');
    expect(sq.message).to.equal(
      "kernel reported a bad superblock for squashfs image partition, possible causes are that your kernel doesn't support the compression algorithm or the image is corrupted",
    );
    // A message about compression that does not say it is unsupported is just quoted.
    const said = mapped(new SystemError({ errno: EINVAL, syscall: 'mount', kernelMessages: ['e ext4: bad compression flag', 'e second'] }), { fstype: 'ext3' });
    expect(said.code).to.equal('ERR_MOUNT_BAD_SUPERBLOCK');
    expect(said.message).to.equal('ext3 image partition contains a bad superblock (corrupted image ?) (kernel: e ext4: bad compression flag; e second)');
  });

  it('anything else stays the SystemError itself', () => {
    const cases = [
      new SystemError({ errno: EINVAL, syscall: 'fsconfig(FSCONFIG_SET_STRING)' }),
      new SystemError({ errno: EINVAL, syscall: 'move_mount' }),
      new SystemError({ errno: EPERM, syscall: 'mount' }),
      new SystemError({ errno: ENODEV, syscall: 'open' }),
    ];
    for (const err of cases) expect(mapMountError(err, { fstype: 'squashfs' }), err.message).to.equal(err);
  });
});
