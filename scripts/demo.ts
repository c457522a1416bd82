// The main job, end to end on this machine: build a small container image with imgmount's
// own SIF writer (a squashfs root filesystem, oci-config.json, an ext3 overlay partition),
// then open and describe it the way a runtime would.
//
//   node dist/scripts/demo.js [WORKDIR]     (scripts/demo.sh sets everything up first)

import * as fs from 'node:fs';
import * as path from 'node:path';
import { describeImage } from '../lib/cli/inspect';
import { init } from '../lib/image/init';
import { readSection } from '../lib/image/reader';
import { hostArch } from '../lib/image/arch';
import { DataGenericJSON, DataPartition, FsExt3, FsSquash, PartOverlay, PartPrimSys } from '../lib/sif/constants';
import { createSif } from '../lib/sif/write';
import { makeRootTree, mke2fs, mksquashfs } from './make-fixtures';

function step(text: string): void {
  process.stdout.write(`\n==> ${text}\n`);
}

/** Builds the demo SIF in `workdir` and returns its path. */
export async function buildDemoImage(workdir: string): Promise<string> {
  fs.mkdirSync(workdir, { recursive: true });
  const tree = path.join(workdir, 'rootfs');
  makeRootTree(tree);
  const squashfs = path.join(workdir, 'rootfs.sqfs');
  const overlay = path.join(workdir, 'overlay.ext3');
  mksquashfs(tree, squashfs, 'zstd');
  // An empty ext3 with the upper/work directories overlayfs wants.
  const ov = path.join(workdir, 'overlay-tree');
  fs.rmSync(ov, { recursive: true, force: true });
  fs.mkdirSync(path.join(ov, 'upper'), { recursive: true });
  fs.mkdirSync(path.join(ov, 'work'));
  mke2fs(overlay, 'ext3', ov, 8192);
  const sif = path.join(workdir, 'demo.sif');
  const config = { Env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'], Cmd: ['/bin/true.sh'], Labels: { 'org.imgmount.demo': 'yes' } };
  const w = await createSif(sif, {
    launchScript: '#!/usr/bin/env run-singularity\n',
    objects: [
      { dataType: DataGenericJSON, name: 'oci-config.json', data: Buffer.from(JSON.stringify(config)) },
      { dataType: DataPartition, name: 'rootfs', data: fs.readFileSync(squashfs), partition: { fsType: FsSquash, partType: PartPrimSys, arch: hostArch() } },
      { dataType: DataPartition, name: 'overlay', data: fs.readFileSync(overlay), partition: { fsType: FsExt3, partType: PartOverlay, arch: hostArch() } },
    ],
  });
  await w.close();
  return sif;
}

async function main(): Promise<void> {
  const workdir = path.resolve(process.argv[2] ?? path.join(__dirname, '..', '..', '.tmp', 'demo'));
  step(`building a demo SIF with imgmount's writer in ${workdir}`);
  const sif = await buildDemoImage(workdir);
  process.stdout.write(`${sif}: ${fs.statSync(sif).size} bytes\n`);

  step('imgmount inspect: format detection and the partition table');
  await using image = await init(sif);
  process.stdout.write(await describeImage(image));

  step('the OCI config stored in the image');
  process.stdout.write((await readSection(image, 'oci-config.json')).toString() + '\n');

  step('the same image as Apptainer-compatible JSON');
  process.stdout.write(image.toJSONString() + '\n');
}

if (require.main === module) {
  main().catch((err) => {
    process.stderr.write(`demo: ${(err as Error).message}\n`);
    process.exitCode = 1;
  });
}
