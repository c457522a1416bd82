// A SIF with a gocryptfs-squashfs root partition (fsType 6), built the way Apptainer builds
// one: the inner squashfs (fixture sq-gzip.sqfs) copied as `squashfs-1` into a gocryptfs
// -plaintextnames directory (initialised with a passphrase on stdin, mounted, written,
// unmounted), the cipher directory packed with `mksquashfs -noD -noF -all-root`, and the
// result written as a PrimSys partition by our SIF writer. Mounts, so callers run in a
// private mount namespace (the kernel tests do).
import { execFileSync, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { hostArch } from '../../lib/image/arch';
import { DataPartition, FsGocryptfsSquashfs, PartPrimSys, createSif } from '../../lib/sif';
import { fixture } from './fixtures';
import { eventually } from './kernel';
import { mountPoints } from './leaks';

export interface GocryptfsImage {
  sif: string;
  key: string;
  /** The plain inner squashfs, for comparison. */
  inner: string;
}

const built = new Map<string, GocryptfsImage>();

export async function gocryptfsImage(dir: string, key = 'correct horse battery staple'): Promise<GocryptfsImage> {
  const hit = built.get(dir);
  if (hit) return hit;
  fs.mkdirSync(dir, { recursive: true });
  const cipher = path.join(dir, 'cipher');
  const plain = path.join(dir, 'plain');
  fs.mkdirSync(cipher);
  fs.mkdirSync(plain);
  execFileSync('gocryptfs', ['-init', '-plaintextnames', '-q', cipher], { input: `${key}\n`, stdio: ['pipe', 'ignore', 'inherit'] });
  const g = spawn('gocryptfs', ['-fg', '-q', cipher, plain], { stdio: ['pipe', 'ignore', 'inherit'] });
  g.stdin!.end(`${key}\n`);
  const exited = new Promise<number | null>((r) => g.once('exit', (code) => r(code)));
  try {
    await eventually(() => mountPoints().includes(plain), 10_000, 'gocryptfs to mount the plain directory');
    const inner = fixture('sq-gzip.sqfs');
    fs.copyFileSync(inner, path.join(plain, 'squashfs-1'));
  } finally {
    try {
      execFileSync('umount', [plain], { stdio: 'ignore' });
    } catch {
      g.kill('SIGKILL');
    }
    await exited;
  }
  const outer = path.join(dir, 'outer.sqfs');
  execFileSync('mksquashfs', [cipher, outer, '-noD', '-noF', '-all-root', '-noappend', '-quiet'], { stdio: ['ignore', 'ignore', 'inherit'] });
  const sif = path.join(dir, 'gocryptfs.sif');
  const w = await createSif(sif, {
    deterministic: true,
    objects: [{ dataType: DataPartition, name: 'rootfs', data: fs.readFileSync(outer), partition: { fsType: FsGocryptfsSquashfs, partType: PartPrimSys, arch: hostArch() } }],
  });
  await w.close();
  const image = { sif, key, inner: fixture('sq-gzip.sqfs') };
  built.set(dir, image);
  return image;
}
