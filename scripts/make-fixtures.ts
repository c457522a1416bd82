// Generates the test fixtures from deterministic inputs: squashfs images for every
// compression (fixed times, root-owned; byte-identical run to run), ext2/3/4 images with
// fixed UUIDs, hash seeds and file times (inode ctimes still follow the run),
// launch-header variants, deliberately broken images, and SIF images built with our own
// writer. Output goes to test/fixtures/generated (not committed).
//
//   node dist/scripts/make-fixtures.js [OUTDIR]
//
// Needs mksquashfs (squashfs-tools), mke2fs (e2fsprogs) and mkfs.vfat (dosfstools):
// scripts/setup-host.sh installs them.

import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { hostArch } from '../lib/image/arch';
import {
  DataCryptoMessage,
  DataDeffile,
  DataGeneric,
  DataGenericJSON,
  DataPartition,
  FormatPEM,
  FsEncryptedSquashfs,
  FsExt3,
  FsGocryptfsSquashfs,
  FsImmuObj,
  FsRaw,
  FsSquash,
  MessageRSAOAEP,
  PartData,
  PartOverlay,
  PartPrimSys,
  PartSystem,
} from '../lib/sif/constants';
import type { SifObjectInput } from '../lib/sif/object-input';
import { createSif } from '../lib/sif/write';

/** Bumped whenever the fixture set changes, so stale generated dirs are rebuilt. */
export const FIXTURES_VERSION = '4';

const FIXED_TIME = 1_600_000_000; // 2020-09-13, for every file time
const EXT_UUID = '6f8d3e1a-4b2c-4d5e-8f90-a1b2c3d4e5f6';

function run(cmd: string, args: string[], env: NodeJS.ProcessEnv = {}): void {
  execFileSync(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, ...env } });
}

/** The small root filesystem every image holds. */
export function makeRootTree(dir: string): void {
  fs.rmSync(dir, { recursive: true, force: true });
  const files: Array<[string, string, number]> = [
    ['etc/hello.txt', 'hello from imgmount\n', 0o644],
    ['etc/os-release', 'NAME="imgmount test rootfs"\nID=imgmount\n', 0o644],
    ['bin/true.sh', '#!/bin/sh\nexit 0\n', 0o755],
    ['bin/setuid-marker', 'this file has the setuid bit\n', 0o4755],
    ['data/numbers.txt', Array.from({ length: 2000 }, (_, i) => String(i)).join('\n') + '\n', 0o644],
  ];
  for (const [rel, content, mode] of files) {
    const p = path.join(dir, rel);
    fs.mkdirSync(path.dirname(p), { recursive: true });
    fs.writeFileSync(p, content);
    fs.chmodSync(p, mode);
  }
  fs.symlinkSync('hello.txt', path.join(dir, 'etc/hello-link'));
  fs.mkdirSync(path.join(dir, 'tmp'));
  fs.chmodSync(path.join(dir, 'tmp'), 0o1777);
  // Fixed times everywhere (mke2fs -d copies them).
  const walk = (d: string): void => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) walk(p);
      fs.lutimesSync(p, FIXED_TIME, FIXED_TIME);
    }
  };
  walk(dir);
  fs.utimesSync(dir, FIXED_TIME, FIXED_TIME);
}

export function mksquashfs(src: string, out: string, comp: string, extra: string[] = []): void {
  fs.rmSync(out, { force: true });
  run('mksquashfs', [
    src, out, '-noappend', '-no-progress', '-quiet', '-comp', comp, '-all-root',
    '-mkfs-time', String(FIXED_TIME), '-all-time', String(FIXED_TIME), '-no-xattrs', ...extra,
  ]);
}

export function mke2fs(out: string, type: string, src: string | null, sizeKiB: number, extra: string[] = []): void {
  fs.rmSync(out, { force: true });
  const args = ['-q', '-F', '-t', type, '-U', EXT_UUID, '-E', `hash_seed=${EXT_UUID},root_owner=0:0`, '-L', 'imgmount', '-b', '1024'];
  if (src) args.push('-d', src);
  args.push(...extra, out, `${sizeKiB}k`);
  run('mke2fs', args, { E2FSPROGS_FAKE_TIME: String(FIXED_TIME), MKE2FS_DEVICE_SECTSIZE: '512' });
}

/** A copy of `src` with bytes patched (offset -> bytes). */
function patched(src: string, out: string, patches: Array<[number, Buffer | number[]]>): void {
  const b = fs.readFileSync(src);
  for (const [off, bytes] of patches) Buffer.from(bytes as number[]).copy(b, off);
  fs.writeFileSync(out, b);
}

function withHeader(header: string, src: string, out: string): void {
  fs.writeFileSync(out, Buffer.concat([Buffer.from(header, 'latin1'), fs.readFileSync(src)]));
}

export const squashfsCompressions = ['gzip', 'lzo', 'lz4', 'xz', 'zstd'] as const;

/** Builds the filesystem-image fixtures into `out`. */
export function makeFilesystemFixtures(out: string): void {
  const tree = path.join(out, 'rootfs');
  makeRootTree(tree);
  const empty = path.join(out, 'empty-dir');
  fs.rmSync(empty, { recursive: true, force: true });
  fs.mkdirSync(empty);
  fs.utimesSync(empty, FIXED_TIME, FIXED_TIME);

  for (const comp of squashfsCompressions) mksquashfs(tree, path.join(out, `sq-${comp}.sqfs`), comp);
  // An empty squashfs without padding is smaller than Apptainer's 2048-byte probe.
  mksquashfs(empty, path.join(out, 'sq-tiny-nopad.sqfs'), 'gzip', ['-nopad']);

  const gz = path.join(out, 'sq-gzip.sqfs');
  // Compression ids patched in (u16 at byte 20): 2 is legacy lzma (the kernel and squashfuse
  // here cannot read it), 0 and 7 are no compressor at all.
  patched(gz, path.join(out, 'sq-lzma.sqfs'), [[20, [2, 0]]]);
  patched(gz, path.join(out, 'sq-comp0.sqfs'), [[20, [0, 0]]]);
  patched(gz, path.join(out, 'sq-comp7.sqfs'), [[20, [7, 0]]]);
  patched(gz, path.join(out, 'sq-bigendian.sqfs'), [[0, Buffer.from('sqsh')]]);
  patched(gz, path.join(out, 'sq-v3.sqfs'), [[28, [3, 0]]]);
  patched(gz, path.join(out, 'sq-badblocklog.sqfs'), [[22, [11, 0]]]);
  // Cut inside the filesystem: bytes_used (u64 at byte 40) no longer fits.
  const whole = fs.readFileSync(gz);
  const bytesUsed = Number(whole.readBigUInt64LE(40));
  fs.writeFileSync(path.join(out, 'sq-truncated.sqfs'), whole.subarray(0, Math.floor(bytesUsed / 2)));

  const ls = '#!/usr/bin/env run-singularity';
  withHeader(`${ls}\n`, gz, path.join(out, 'hdr-lf.sqfs'));
  withHeader(`${ls}\r\n`, gz, path.join(out, 'hdr-crlf.sqfs'));
  withHeader(`${ls} --app foo\n`, gz, path.join(out, 'hdr-args.sqfs'));
  withHeader('#!/bin/sh\n', gz, path.join(out, 'hdr-other.sqfs'));

  mke2fs(path.join(out, 'ext3.img'), 'ext3', tree, 2048);
  mke2fs(path.join(out, 'ext3-empty.img'), 'ext3', null, 2048);
  mke2fs(path.join(out, 'ext2.img'), 'ext2', tree, 1024);
  mke2fs(path.join(out, 'ext4.img'), 'ext4', tree, 2048);
  mke2fs(path.join(out, 'ext3-metadata_csum.img'), 'ext3', null, 2048, ['-O', 'metadata_csum']);
  mke2fs(path.join(out, 'ext3-extent.img'), 'ext3', null, 2048, ['-O', 'extent']);
  withHeader(`${ls}\n`, path.join(out, 'ext3.img'), path.join(out, 'hdr-lf.ext3'));
  const ext3 = fs.readFileSync(path.join(out, 'ext3.img'));
  fs.writeFileSync(path.join(out, 'ext3-truncated.img'), ext3.subarray(0, ext3.length / 2));

  fs.rmSync(path.join(out, 'vfat.img'), { force: true });
  fs.writeFileSync(path.join(out, 'vfat.img'), Buffer.alloc(1024 * 1024));
  run('mkfs.vfat', ['-i', '12345678', path.join(out, 'vfat.img')], { SOURCE_DATE_EPOCH: String(FIXED_TIME) });

  fs.writeFileSync(path.join(out, 'zeros-2047.bin'), Buffer.alloc(2047));
  fs.writeFileSync(path.join(out, 'empty.bin'), Buffer.alloc(0));
  fs.writeFileSync(path.join(out, 'error-page.html'), '<!DOCTYPE html>\n<html><body>404 Not Found</body></html>\n');
}

const OCI_CONFIG = JSON.stringify({ Env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'], Cmd: ['/bin/true.sh'] });
const INSPECT = JSON.stringify({ type: 'container', data: { attributes: { labels: { 'org.imgmount.test': 'yes' } } } });

/** SIF images built with our own writer (deterministic: nil UUID, Go-zero times). */
export async function makeSifFixtures(out: string): Promise<void> {
  const f = (name: string) => fs.readFileSync(path.join(out, name));
  const arch = hostArch();
  const part = (data: Buffer, fsType: number, partType: number, extra: Partial<SifObjectInput> = {}): SifObjectInput => ({
    dataType: DataPartition,
    data,
    partition: { fsType, partType, arch: extra.partition?.arch ?? arch },
    ...extra,
    ...(extra.partition ? { partition: { fsType, partType, arch: extra.partition.arch } } : {}),
  });
  const meta: SifObjectInput[] = [
    { dataType: DataDeffile, data: Buffer.from('bootstrap: scratch\n') },
    { dataType: DataGenericJSON, name: 'inspect-metadata.json', data: Buffer.from(INSPECT) },
    { dataType: DataGenericJSON, name: 'oci-config.json', data: Buffer.from(OCI_CONFIG) },
  ];
  const root = part(f('sq-gzip.sqfs'), FsSquash, PartPrimSys, { name: 'rootfs' });
  const images: Record<string, SifObjectInput[]> = {
    // Apptainer's TestSIFInitializer cases.
    'sif-no-objects.sif': [],
    'sif-system-only.sif': [part(f('sq-gzip.sqfs'), FsSquash, PartSystem)],
    'sif-foreign-arch.sif': [part(f('sq-gzip.sqfs'), FsSquash, PartPrimSys, { partition: { fsType: FsSquash, partType: PartPrimSys, arch: arch === 's390x' ? 'riscv64' : 's390x' } })],
    'sif-primsys.sif': [root],
    'sif-overlay-squashfs.sif': [root, part(f('sq-xz.sqfs'), FsSquash, PartOverlay, { name: 'overlay' })],
    'sif-generic.sif': [{ dataType: DataGeneric, name: 'blob', data: Buffer.from('generic data') }],
    'sif-primsys-generic.sif': [root, { dataType: DataGeneric, name: 'blob', data: Buffer.from('generic data') }],
    // Beyond them.
    'sif-basic.sif': [...meta, root],
    'sif-overlay.sif': [...meta, root, part(f('ext3-empty.img'), FsExt3, PartOverlay, { name: 'overlay' })],
    'sif-overlay-othergroup.sif': [root, part(f('ext3-empty.img'), FsExt3, PartOverlay, { name: 'overlay', group: 2 })],
    'sif-overlay-bad.sif': [root, part(Buffer.alloc(8192, 0xab), FsExt3, PartOverlay, { name: 'overlay' })],
    'sif-data.sif': [root, part(f('sq-xz.sqfs'), FsSquash, PartData, { name: 'data' }), part(f('ext3-empty.img'), FsExt3, PartData, { name: 'scratch' })],
    'sif-data-ext4.sif': [root, part(f('ext4.img'), FsExt3, PartData, { name: 'ext4-data' })],
    'sif-ext3-root.sif': [part(f('ext3.img'), FsExt3, PartPrimSys, { name: 'rootfs' })],
    'sif-raw.sif': [part(Buffer.from([0xfa, 0xce, 0xfe, 0xed]), FsRaw, PartPrimSys)],
    'sif-archive.sif': [part(Buffer.from('archive'), FsImmuObj, PartPrimSys)],
    'sif-encrypted.sif': [
      part(Buffer.alloc(8192, 0x5a), FsEncryptedSquashfs, PartPrimSys),
      { dataType: DataCryptoMessage, data: Buffer.from('-----BEGIN MESSAGE-----\n'), link: { type: 'object', id: 1 }, cryptoMessage: { format: FormatPEM, message: MessageRSAOAEP } },
    ],
    'sif-gocryptfs.sif': [part(Buffer.alloc(8192, 0x5a), FsGocryptfsSquashfs, PartPrimSys)],
    'sif-multi-primsys.sif': [root, part(f('sq-xz.sqfs'), FsSquash, PartSystem, { name: 'second' })],
    // For the kernel tests: a squashfs root and an ext3 data partition holding the same
    // tree, then 8 KiB of 0xAA so that a loop device without its size limit would show it.
    'sif-kernel.sif': [
      root,
      part(f('ext3.img'), FsExt3, PartData, { name: 'data' }),
      { dataType: DataGeneric, name: 'tail', data: Buffer.alloc(8192, 0xaa) },
    ],
  };
  for (const [name, objects] of Object.entries(images)) {
    const w = await createSif(path.join(out, name), {
      deterministic: true,
      launchScript: name === 'sif-basic.sif' ? '#!/usr/bin/env run-singularity\n' : undefined,
      objects,
    });
    await w.close();
  }
  // The writer refuses a second primary partition, so make one by hand: parttype of slot 1
  // (descriptor table at 4096, 585-byte slots, extra at +201, parttype at extra +4).
  const multi = path.join(out, 'sif-multi-primsys.sif');
  patched(multi, multi, [[4096 + 585 + 201 + 4, [PartPrimSys, 0, 0, 0]]]);
  // Apptainer's corrupted-SIF case: the primary partition cut by 4096 bytes.
  const basic = fs.readFileSync(path.join(out, 'sif-primsys.sif'));
  fs.writeFileSync(path.join(out, 'sif-truncated.sif'), basic.subarray(0, basic.length - 4096));
  patched(path.join(out, 'sif-primsys.sif'), path.join(out, 'sif-bad-version.sif'), [[42, Buffer.from('02\0')]]);
}

/** Builds every fixture into `out`. */
export async function makeFixtures(out: string): Promise<void> {
  fs.mkdirSync(out, { recursive: true });
  makeFilesystemFixtures(out);
  await makeSifFixtures(out);
  fs.writeFileSync(path.join(out, '.stamp'), FIXTURES_VERSION);
}

/** True if `out` holds fixtures of this version. */
export function fixturesCurrent(out: string): boolean {
  const stamp = path.join(out, '.stamp');
  return fs.existsSync(stamp) && fs.readFileSync(stamp, 'utf8') === FIXTURES_VERSION;
}

if (require.main === module) {
  const out = path.resolve(process.argv[2] ?? path.join(__dirname, '..', '..', 'test', 'fixtures', 'generated'));
  makeFixtures(out).then(
    () => process.stdout.write(`fixtures written to ${out}\n`),
    (err) => {
      process.stderr.write(`make-fixtures: ${(err as Error).stack}\n`);
      process.exitCode = 1;
    },
  );
}
