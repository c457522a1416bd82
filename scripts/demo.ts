// The main job, end to end on this machine: build a small container image with imgmount's
// own SIF writer (a squashfs root filesystem, oci-config.json, an ext3 overlay partition),
// inspect it, mount its root by the kernel driver (writing through the SIF's own overlay
// partition) and by the FUSE driver, show the files and mount options, unmount, and show
// that nothing is left behind.
//
//   node dist/scripts/demo.js [WORKDIR]     (scripts/demo.sh sets everything up first)

import * as fs from 'node:fs';
import * as path from 'node:path';
import { describeImage } from '../lib/cli/inspect';
import { hostArch } from '../lib/image/arch';
import { init } from '../lib'; // the package entry: it also loads the mounting layer Image.root() needs
import { readSection } from '../lib/image/reader';
import { listLoopDevices } from '../lib/loop/status';
import { readMountInfo, type MountInfoEntry } from '../lib/mount/mountinfo';
import { stateDir } from '../lib/drivers/mount-record';
import { mountImage } from '../lib/root/mount-image';
import { DataGenericJSON, DataPartition, FsExt3, FsSquash, PartOverlay, PartPrimSys } from '../lib/sif/constants';
import { createSif } from '../lib/sif/write';
import { makeRootTree, mke2fs, mksquashfs } from './make-fixtures';

function step(text: string): void {
  process.stdout.write(`\n==> ${text}\n`);
}

function say(text: string): void {
  process.stdout.write(`${text}\n`);
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

function describeMount(m: MountInfoEntry): string {
  return `${m.mountPoint}: ${m.fstype} from ${m.source}, options ${m.mountOptions.join(',')}`;
}

async function mountsUnder(dir: string): Promise<MountInfoEntry[]> {
  return (await readMountInfo()).filter((m) => m.mountPoint === dir || m.mountPoint.startsWith(dir + '/'));
}

function helperProcesses(): string[] {
  const names = new Set(['squashfuse', 'squashfuse_ll', 'fuse2fs', 'gocryptfs', 'fuse-overlayfs']);
  return fs
    .readdirSync('/proc')
    .filter((p) => /^\d+$/.test(p))
    .map((p) => {
      try {
        return `${p} ${fs.readFileSync(`/proc/${p}/comm`, 'utf8').trim()}`;
      } catch {
        return '';
      }
    })
    .filter((l) => names.has(l.split(' ')[1] ?? ''));
}

function listing(dir: string): string {
  return ['etc', 'bin']
    .map((d) => `  /${d}: ${fs.readdirSync(path.join(dir, d)).sort().join(' ')}`)
    .join('\n');
}

async function main(): Promise<void> {
  const workdir = path.resolve(process.argv[2] ?? path.join(__dirname, '..', '..', '.tmp', 'demo'));
  step(`building a demo SIF with imgmount's writer in ${workdir}`);
  const sif = await buildDemoImage(workdir);
  say(`${sif}: ${fs.statSync(sif).size} bytes`);

  step('imgmount inspect: format detection and the partition table');
  {
    await using image = await init(sif);
    process.stdout.write(await describeImage(image));
    say(`oci-config.json: ${(await readSection(image, 'oci-config.json')).toString()}`);
    say(`Apptainer-compatible JSON: ${image.toJSONString()}`);
  }

  const target = path.join(workdir, 'mnt');
  fs.mkdirSync(target, { recursive: true });

  step('kernel driver: the root, writable through the SIF\'s own ext3 overlay partition');
  {
    await using image = await init(sif, true);
    await using r = await image.root(target, { driver: 'kernel', writable: true });
    say(`OCI root: ${JSON.stringify(r.root)}`);
    const table = await readMountInfo();
    for (const m of r.mounts) {
      const e = table.find((x) => x.mountPoint === m.target);
      say(`  ${m.fstype.padEnd(8)} ${m.target}${m.loopDevice ? ` via ${m.loopDevice}` : ''}${e ? `  [${e.mountOptions.join(',')}]` : ''}`);
    }
    say(listing(target));
    say(`  /etc/hello.txt: ${fs.readFileSync(path.join(target, 'etc/hello.txt'), 'utf8').trim()}`);
    fs.writeFileSync(path.join(target, 'etc/written-by-demo.txt'), `written at ${new Date().toISOString()}\n`);
    say('  wrote /etc/written-by-demo.txt through the overlay');
  }
  say(`unmounted; mounts left under ${target}: ${(await mountsUnder(target)).length}`);

  step('FUSE driver: the same image, its root partition served by squashfuse');
  {
    await using image = await init(sif);
    await using m = await mountImage(image, target, { driver: 'fuse' });
    say(`  ${m.fstype} at ${m.target}, served by ${m.helpers.map((h) => `${h.program}[${h.pid}]`).join(', ')}`);
    for (const e of await mountsUnder(target)) say(describeMount(e));
    say(listing(target));
    say(`  /etc/written-by-demo.txt here (no overlay): ${fs.existsSync(path.join(target, 'etc/written-by-demo.txt'))}`);
  }

  step('kernel driver again, read-write: the file written through the overlay is still in the SIF');
  {
    await using image = await init(sif, true);
    await using r = await image.root(target, { driver: 'kernel', writable: true });
    say(`  /etc/written-by-demo.txt: ${fs.readFileSync(path.join(r.root.path, 'etc/written-by-demo.txt'), 'utf8').trim()}`);
  }

  step('nothing left behind');
  const loops = (await listLoopDevices()).filter((d) => d.backingFile === sif);
  const mounts = [...(await mountsUnder(workdir)), ...(await mountsUnder(stateDir()))];
  const helpers = helperProcesses();
  const sessions = fs.existsSync(path.join(stateDir(), 'sessions')) ? fs.readdirSync(path.join(stateDir(), 'sessions')) : [];
  say(`  loop devices bound to ${path.basename(sif)}: ${loops.length}`);
  say(`  mounts under ${workdir} and ${stateDir()}: ${mounts.length}`);
  say(`  session directories in ${stateDir()}/sessions: ${sessions.length}`);
  say(`  FUSE helper processes: ${helpers.length}`);
  if (loops.length || mounts.length || helpers.length || sessions.length) throw new Error('the demo left something behind');
}

if (require.main === module) {
  main().catch((err) => {
    process.stderr.write(`demo: ${(err as Error).stack ?? (err as Error).message}\n`);
    process.exitCode = 1;
  });
}
