// What every row mounts: the held-out SIF Apptainer built (../shared/fixtures/sif/apptainer/
// busybox_amd64.sif, read in place), or, where that is missing, a SIF built here with
// imgmount's writer from a small tree. The partition's offset and size come from init(), so
// the baselines (the C floor, util-linux, squashfuse_ll) mount the same bytes the library does.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { SQUASHFS, createSif, hostArch, init, sif } from '../../lib';
import { makeRootTree, mksquashfs } from '../../scripts/make-fixtures';

export interface Workload {
  /** The image file (real path: what /sys/block/loopN/loop/backing_file shows). */
  image: string;
  /** Where it came from, for the report. */
  origin: 'held-out fixture' | 'generated';
  offset: number;
  size: number;
  fstype: 'squashfs';
  /** A file inside the root filesystem, relative to its top, that every cycle stats. */
  inside: string;
}

export const SHARED_SIF = path.join('fixtures', 'sif', 'apptainer', 'busybox_amd64.sif');

export async function workload(sharedDir: string, tmp: string): Promise<Workload> {
  const shared = path.join(sharedDir, SHARED_SIF);
  if (fs.existsSync(shared)) return describe(fs.realpathSync(shared), 'held-out fixture', 'bin/busybox');
  const tree = path.join(tmp, 'tree');
  makeRootTree(tree);
  const sqfs = path.join(tmp, 'rootfs.sqfs');
  mksquashfs(tree, sqfs, 'gzip');
  const file = path.join(tmp, 'image.sif');
  const w = await createSif(file, {
    objects: [{ dataType: sif.DataPartition, name: 'rootfs', data: fs.readFileSync(sqfs), partition: { fsType: sif.FsSquash, partType: sif.PartPrimSys, arch: hostArch() } }],
  });
  await w.close();
  // Owned by root and writable by nobody else, like the fixture: the kernel driver is chosen.
  fs.chmodSync(file, 0o444);
  return describe(fs.realpathSync(file), 'generated', 'etc/hello.txt');
}

async function describe(image: string, origin: Workload['origin'], inside: string): Promise<Workload> {
  const img = await init(image);
  try {
    const p = img.getRootFsPartition();
    if (p.type !== SQUASHFS) throw new Error(`${image}: the root filesystem is not squashfs (type ${p.type})`);
    return { image, origin, offset: p.offset, size: p.size, fstype: 'squashfs', inside };
  } finally {
    await img.close();
  }
}
