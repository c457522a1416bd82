// gocryptfs-squashfs partitions (SIF fsType 6), as Apptainer builds them: an outer squashfs
// (mksquashfs -noD -noF) holding gocryptfs.conf and the encrypted (-plaintextnames) inner
// squashfs, a file named squashfs-*. Mounting is a chain of three helpers:
//   squashfuse  partition (offset)        -> <session>/cipher
//   gocryptfs   -fg -ro cipher, key on stdin -> <session>/plain
//   squashfuse  <plain>/squashfs-*         -> target
// released in the reverse order (the `gocryptfs` entry of the driver's table runs the chain).
// The key goes to gocryptfs' stdin only (never argv, env or logs).

import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { ImgmountError, invalidArgValue, throwIfAborted } from '../../errors';
import { helperStep, needProgram, type FuseFilesystem, type PlanInput, type Step } from './plan';
import { squashfusePlan } from './squashfuse';

/** gocryptfs' exit status for a wrong password ("Password incorrect."). */
export const GOCRYPTFS_EXIT_PASSWORD_INCORRECT = 12;

export interface GocryptfsArgs {
  allowOther: boolean;
}

export function gocryptfsArgs(o: GocryptfsArgs, cipherDir: string, mountpoint: string): string[] {
  return ['-fg', '-ro', ...(o.allowOther ? ['-allow_other'] : []), '--', cipherDir, mountpoint];
}

/** The key as gocryptfs reads it from stdin: one line. */
export function gocryptfsInput(key: unknown): Buffer {
  if (key === undefined || key === null) throw invalidArgValue('params.key', key, 'is required to mount a gocryptfs partition');
  if (!Buffer.isBuffer(key) && !(key instanceof Uint8Array)) throw invalidArgValue('params.key', key, 'must be a Buffer');
  let k = Buffer.from(key);
  if (k.length > 0 && k[k.length - 1] === 0x0a) k = k.subarray(0, k.length - 1);
  if (k.length === 0) throw invalidArgValue('params.key', '<empty>', 'must not be empty');
  if (k.includes(0x0a) || k.includes(0x00)) throw invalidArgValue('params.key', '<redacted>', 'must be one line (no newline or NUL bytes)');
  return Buffer.concat([k, Buffer.from('\n')]);
}

/**
 * Checks the mounted outer squashfs: it must hold gocryptfs.conf and exactly one non-empty
 * regular file named squashfs-*. Returns that file's name.
 */
export async function findInnerSquashfs(cipherDir: string, image: string): Promise<string> {
  let names: string[];
  try {
    names = await fsp.readdir(cipherDir);
  } catch (cause) {
    throw new ImgmountError('ERR_PARTITION_INVALID', `cannot list the gocryptfs partition of ${image}: ${(cause as Error).message}`, { cause, path: image });
  }
  if (!names.includes('gocryptfs.conf'))
    throw new ImgmountError('ERR_PARTITION_INVALID', `the gocryptfs partition of ${image} holds no gocryptfs.conf (found: ${names.join(', ') || 'nothing'})`, {
      path: image,
      details: { entries: names },
    });
  const candidates: string[] = [];
  for (const n of names.filter((n) => n.startsWith('squashfs-'))) {
    const st = await fsp.lstat(path.join(cipherDir, n)).catch(() => null);
    if (st?.isFile() && st.size > 0) candidates.push(n);
  }
  if (candidates.length !== 1)
    throw new ImgmountError(
      'ERR_PARTITION_INVALID',
      candidates.length === 0
        ? `the gocryptfs partition of ${image} holds no non-empty squashfs-* file (could not find the encrypted squashfs)`
        : `the gocryptfs partition of ${image} holds several squashfs-* files (${candidates.join(', ')}); expected one`,
      { path: image, details: { entries: names } },
    );
  return candidates[0]!;
}

/** gocryptfs decrypting `cipherDir` (the outer squashfs, mounted) at `plainDir`, the key on its stdin. */
export function gocryptfsPlan(input: PlanInput, key: Buffer, cipherDir: string, plainDir: string): Step {
  const b = helperStep(input, needProgram(input.bins, 'gocryptfs', 'mount gocryptfs partitions'), plainDir);
  return { ...b, input: key, argv: (_s, mp) => gocryptfsArgs({ allowOther: false }, cipherDir, mp) };
}

/** gocryptfs exited saying the password is incorrect. */
export function isKeyRejection(err: unknown): boolean {
  const e = err as ImgmountError;
  return e.code === 'ERR_HELPER_FAILED' && e.details?.code === GOCRYPTFS_EXIT_PASSWORD_INCORRECT;
}

/** ERR_KEY_REJECTED for gocryptfs' wrong-password exit (`err`, see isKeyRejection). */
export function keyRejected(err: ImgmountError, image: string): ImgmountError {
  return new ImgmountError('ERR_KEY_REJECTED', `gocryptfs rejected the key for the gocryptfs partition of ${image}: ${String(err.details?.output ?? '') || 'password incorrect'}`, {
    cause: err,
    details: { program: 'gocryptfs', code: GOCRYPTFS_EXIT_PASSWORD_INCORRECT },
  });
}

/** gocryptfs: the chain of three helpers above; only the last mount goes where asked. */
export const gocryptfs: FuseFilesystem = {
  alwaysReadOnly: true,
  internalMounts: true,
  takesOwner: false,
  async mount(run) {
    const input = run.input();
    needProgram(input.bins, 'gocryptfs', 'mount gocryptfs partitions');
    needProgram(input.bins, 'squashfuse', 'mount gocryptfs partitions');
    const key = gocryptfsInput(input.params.key);
    // The chain's inner mounts live in our session directory.
    const cipher = await run.internalDir('cipher');
    const plain = await run.internalDir('plain');
    const src = await run.openImage('squashfs', false);
    await run.serve(squashfusePlan(run.input(), src, input.params.offset, cipher));
    const inner = await findInnerSquashfs(cipher, await run.imageName());
    throwIfAborted(input.signal);
    try {
      await run.serve(gocryptfsPlan(run.input(), key, cipher, plain));
    } catch (err) {
      if (isKeyRejection(err)) throw keyRejected(err as ImgmountError, await run.imageName());
      throw err;
    }
    // The decrypted image is a file inside the encrypted filesystem: opened there without
    // following any symlink (one could point at a host file).
    const decrypted = await run.openBeneath(plain, inner);
    await run.serve(squashfusePlan(run.input(), decrypted, 0, null));
  },
};
