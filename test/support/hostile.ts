// Images, overlays and directories an attacker would hand a root daemon, built per run:
//  - a "host" directory outside every image, with a file, standing for anything of the host's
//    that must stay out of reach;
//  - a SIF whose root filesystem has symlinks where data partitions get mounted (absolute and
//    relative ones pointing at the host directory, one at a path that exists in the image too)
//    and an ext3 data partition;
//  - overlays whose upper/ and work/ are symlinks to the host: ext3 images (absolute and
//    relative links), a directory, and a SIF whose own overlay partition holds them;
//  - an image with a real setuid-root program (a copy of id(1)) and a device node.
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { hostArch } from '../../lib/image/arch';
import { DataPartition, FsExt3, FsSquash, PartData, PartOverlay, PartPrimSys } from '../../lib/sif/constants';
import { createSif } from '../../lib/sif/write';
import type { SifObjectInput } from '../../lib/sif/object-input';
import { makeRootTree, mke2fs, mksquashfs } from '../../scripts/make-fixtures';
import { testTmp } from './hooks';

export interface HostileImages {
  /** Stands for the host: nothing may be mounted on it, written to it or shown from it. */
  host: string;
  /** A second host directory (work/ points here). */
  host2: string;
  /** Root squashfs with symlinked mount points (see DATA_LINKS) and an ext3 data partition "data". */
  dataSif: string;
  /** ext3 overlay images whose upper/ and work/ are symlinks to host and host2. */
  overlayExt3: { absolute: string; relative: string };
  /** An overlay directory whose upper/ and work/ are symlinks to host and host2. */
  overlayDir: string;
  /** A SIF: squashfs root plus an ext3 overlay partition whose upper/ and work/ point at the host. */
  sifOverlay: string;
  /** A plain squashfs root to put overlays on. */
  base: string;
}

/** Mount points in dataSif's root, and where each one leads. */
export const DATA_LINKS = {
  /** Absolute, to the second host directory (a path the image does not have). */
  absHost: 'abs-host',
  /** Relative, up past the image's root, to the second host directory. */
  relHost: 'rel-host',
  /** Absolute, to the first host directory's path, which the image also has: resolves inside the image. */
  absPresent: 'abs-present',
  /** Absolute, to /etc (the image's own /etc). */
  absEtc: 'abs-etc',
} as const;

let built: HostileImages | undefined;

function hostDir(name: string): string {
  const d = path.join(testTmp, name);
  fs.mkdirSync(d, { recursive: true });
  fs.writeFileSync(path.join(d, 'host-file.txt'), 'the host\'s own file\n');
  return d;
}

/** A relative symlink text that climbs out of any image root, then down to `to`. */
function climbing(to: string): string {
  return '../'.repeat(16) + to.replace(/^\//, '');
}

async function sif(out: string, objects: SifObjectInput[]): Promise<string> {
  const w = await createSif(out, { deterministic: true, objects });
  await w.close();
  return out;
}

function part(data: Buffer, fsType: number, partType: number, name: string): SifObjectInput {
  return { dataType: DataPartition, name, data, partition: { fsType, partType, arch: hostArch() } };
}

function overlayTree(dir: string, upper: string, work: string): string {
  fs.mkdirSync(dir, { recursive: true });
  fs.symlinkSync(upper, path.join(dir, 'upper'));
  fs.symlinkSync(work, path.join(dir, 'work'));
  return dir;
}

export async function hostileImages(): Promise<HostileImages> {
  if (built) return built;
  const dir = path.join(testTmp, 'hostile');
  fs.mkdirSync(dir, { recursive: true });
  const host = hostDir('host');
  const host2 = hostDir('host2');

  const rootTree = path.join(dir, 'root-tree');
  makeRootTree(rootTree);
  fs.symlinkSync(host2, path.join(rootTree, DATA_LINKS.absHost));
  fs.symlinkSync(climbing(host2), path.join(rootTree, DATA_LINKS.relHost));
  fs.symlinkSync(host, path.join(rootTree, DATA_LINKS.absPresent));
  fs.mkdirSync(path.join(rootTree, host), { recursive: true }); // the same path, inside the image
  fs.symlinkSync('/etc', path.join(rootTree, DATA_LINKS.absEtc));
  const rootSqfs = path.join(dir, 'root.sqfs');
  mksquashfs(rootTree, rootSqfs, 'gzip');
  const dataTree = path.join(dir, 'data-tree');
  fs.mkdirSync(dataTree, { recursive: true });
  fs.writeFileSync(path.join(dataTree, 'data-partition.txt'), 'from the data partition\n');
  const dataExt3 = path.join(dir, 'data.ext3');
  mke2fs(dataExt3, 'ext3', dataTree, 2048);
  const dataSif = await sif(path.join(dir, 'data.sif'), [
    part(fs.readFileSync(rootSqfs), FsSquash, PartPrimSys, 'rootfs'),
    part(fs.readFileSync(dataExt3), FsExt3, PartData, 'data'),
  ]);

  const ovAbs = overlayTree(path.join(dir, 'ov-abs'), host, host2);
  const ovRel = overlayTree(path.join(dir, 'ov-rel'), climbing(host), climbing(host2));
  const overlayExt3 = { absolute: path.join(dir, 'overlay-abs.ext3'), relative: path.join(dir, 'overlay-rel.ext3') };
  mke2fs(overlayExt3.absolute, 'ext3', ovAbs, 2048);
  mke2fs(overlayExt3.relative, 'ext3', ovRel, 2048);
  const overlayDir = overlayTree(path.join(dir, 'overlay-dir'), host, host2);

  const base = path.join(dir, 'base.sqfs');
  const baseTree = path.join(dir, 'base-tree');
  makeRootTree(baseTree);
  mksquashfs(baseTree, base, 'gzip');
  const sifOverlay = await sif(path.join(dir, 'overlay.sif'), [
    part(fs.readFileSync(base), FsSquash, PartPrimSys, 'rootfs'),
    part(fs.readFileSync(overlayExt3.absolute), FsExt3, PartOverlay, 'overlay'),
  ]);
  built = { host, host2, dataSif, overlayExt3, overlayDir, sifOverlay, base };
  return built;
}

/** Everything under `dir` (relative names, sorted): to show a host directory did not change. */
export function listing(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string, rel: string): void => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      out.push(path.join(rel, e.name));
      if (e.isDirectory()) walk(path.join(d, e.name), path.join(rel, e.name));
    }
  };
  walk(dir, '');
  return out.sort();
}

export interface PrivilegeImages {
  squashfs: string;
  ext3: string;
  /** A directory others may traverse, for mount points that `nobody` must reach. */
  open: string;
}

let privilege: PrivilegeImages | undefined;

/**
 * Images holding bin/suid-id (a copy of id(1), setuid root) and dev/null-node (a character
 * device 1:3, mode 0666): what nosuid and nodev must neutralise.
 */
export function privilegeImages(): PrivilegeImages {
  if (privilege) return privilege;
  const dir = path.join(testTmp, 'privilege');
  const tree = path.join(dir, 'tree');
  fs.mkdirSync(path.join(tree, 'bin'), { recursive: true });
  fs.mkdirSync(path.join(tree, 'dev'), { recursive: true });
  fs.copyFileSync('/usr/bin/id', path.join(tree, 'bin/suid-id'));
  fs.chownSync(path.join(tree, 'bin/suid-id'), 0, 0);
  fs.chmodSync(path.join(tree, 'bin/suid-id'), 0o4755);
  execFileSync('mknod', ['-m', '0666', path.join(tree, 'dev/null-node'), 'c', '1', '3']);
  const squashfs = path.join(dir, 'privilege.sqfs');
  mksquashfs(tree, squashfs, 'gzip');
  const ext3 = path.join(dir, 'privilege.ext3');
  mke2fs(ext3, 'ext3', tree, 4096);
  // testTmp is 0700: mount points nobody must reach live in a directory of their own.
  const open = fs.mkdtempSync(path.join(os.tmpdir(), 'imgmount-open-'));
  fs.chmodSync(open, 0o755);
  privilege = { squashfs, ext3, open };
  return privilege;
}

/** Removes privilegeImages().open (call once everything under it is unmounted). */
export function removeOpenDir(): void {
  if (privilege) fs.rmSync(privilege.open, { recursive: true, force: true });
}
