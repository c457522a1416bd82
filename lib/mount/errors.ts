// Kernel mount errors mapped to what they usually mean (Apptainer's engine texts), as an
// ImgmountError with a stable code whose `cause` is the SystemError (errno, syscall, path,
// dest and the fs context's kernel messages stay reachable there and in `details`).
// Errors without a known meaning stay the SystemError itself. One rule everywhere.

import { ImgmountError, SystemError, type ImgmountErrorCode } from '../errors';

export interface MountErrorContext {
  fstype: string;
  source?: string;
  target?: string;
}

const CREATE_STEPS = new Set(['mount', 'fsconfig(FSCONFIG_CMD_CREATE)', 'fsmount']);

function kernelSays(err: SystemError): string {
  return err.kernelMessages?.length ? ` (kernel: ${err.kernelMessages.join('; ')})` : '';
}

function wrap(code: ImgmountErrorCode, message: string, err: SystemError, ctx: MountErrorContext): ImgmountError {
  return new ImgmountError(code, message + kernelSays(err), {
    cause: err,
    ...(ctx.source !== undefined ? { path: ctx.source } : {}),
    details: {
      errno: err.errno,
      syscall: err.syscall,
      fstype: ctx.fstype,
      target: ctx.target,
      ...(err.kernelMessages ? { kernelMessages: err.kernelMessages } : {}),
    },
  });
}

/** Maps a failed mount step; anything it does not recognise is returned unchanged. */
export function mapMountError(err: unknown, ctx: MountErrorContext): unknown {
  if (!(err instanceof SystemError)) return err;
  const fs = ctx.fstype;
  if (err.code === 'ENODEV' && (err.syscall === 'fsopen' || err.syscall === 'mount'))
    return wrap('ERR_MOUNT_UNSUPPORTED_FS', `${fs} filesystem seems not enabled and/or supported by your kernel`, err, ctx);
  if (err.code === 'EINVAL' && err.syscall === 'mount_setattr(MOUNT_ATTR_IDMAP)')
    return wrap(
      'ERR_IDMAP_UNSUPPORTED',
      `the ${fs} filesystem does not support ID-mapped mounts on this kernel` +
        (fs === 'ext3' ? "; mount ext3 images with fstype 'ext4' (the ext4 driver reads them and supports ID maps)" : ''),
      err,
      ctx,
    );
  if (err.code === 'EINVAL' && CREATE_STEPS.has(err.syscall)) {
    if (err.kernelMessages?.some((m) => /compression/i.test(m) && /not supported|unsupported/i.test(m)))
      return wrap('ERR_MOUNT_UNSUPPORTED_COMPRESSION', `${fs} image partition uses a compression algorithm this kernel does not support`, err, ctx);
    if (fs === 'squashfs')
      return wrap(
        'ERR_MOUNT_BAD_SUPERBLOCK',
        "kernel reported a bad superblock for squashfs image partition, possible causes are that your kernel doesn't support the compression algorithm or the image is corrupted",
        err,
        ctx,
      );
    return wrap('ERR_MOUNT_BAD_SUPERBLOCK', `${fs} image partition contains a bad superblock (corrupted image ?)`, err, ctx);
  }
  return err;
}
