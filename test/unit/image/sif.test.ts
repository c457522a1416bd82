// SIF partition classification (Apptainer's TestSIFInitializer cases and beyond), on SIF
// images built by our own writer (scripts/make-fixtures.ts).
import { expect } from 'chai';
import * as fs from 'node:fs';
import * as path from 'node:path';
import {
  DataUsage,
  ENCRYPTSQUASHFS,
  EXT3,
  GOCRYPTFSSQUASHFS,
  ImgmountError,
  OverlayUsage,
  RAW,
  RootFs,
  RootFsUsage,
  SIF,
  SQUASHFS,
  archRunnable,
  hostArch,
  init,
} from '../../../lib';
import { binfmtRuns } from '../../../lib/image/arch';
import { O_ACCMODE, fdFlags } from '../../support/fds';
import { fixture } from '../../support/fixtures';
import { HOST_ARCH, emulatorsSkipReason, expectedRunnable, goArchOf } from '../../support/host';
import { testTmp } from '../../support/hooks';
import { skip } from '../../support/skip';

async function failure(name: string, writable = false): Promise<ImgmountError> {
  try {
    await (await init(fixture(name), writable)).close();
  } catch (err) {
    return err as ImgmountError;
  }
  throw new Error(`${name} should not load`);
}

describe('SIF partitions and sections (Apptainer TestSIFInitializer)', () => {
  const cases: Array<[string, number, number]> = [
    ['sif-no-objects.sif', 0, 0],
    ['sif-system-only.sif', 0, 0],
    ['sif-primsys.sif', 1, 0],
    ['sif-overlay-squashfs.sif', 2, 0],
    ['sif-generic.sif', 0, 1],
    ['sif-primsys-generic.sif', 1, 1],
  ];
  for (const [name, parts, sections] of cases) {
    it(`${name}: ${parts} partitions, ${sections} sections`, async () => {
      await using img = await init(fixture(name));
      expect(img.type).to.equal(SIF);
      expect(img.partitions).to.have.length(parts);
      expect(img.sections).to.have.length(sections);
    });
  }

  it('a primary partition for a foreign architecture is refused on this host (ERR_ARCH_MISMATCH naming both)', async function () {
    // scripts/make-fixtures.ts gives it s390x, or riscv64 on an s390x host.
    const foreign = HOST_ARCH === 's390x' ? 'riscv64' : 's390x';
    const runs = expectedRunnable(foreign);
    if (runs === undefined) {
      skip(this, emulatorsSkipReason(foreign));
    }
    expect(runs, `${foreign} on a ${HOST_ARCH} host without emulators`).to.equal(false);
    const err = await failure('sif-foreign-arch.sif');
    expect(err.code).to.equal('ERR_ARCH_MISMATCH');
    expect(err.message).to.equal(`the image's architecture (${foreign}) could not run on the host's (${HOST_ARCH})`);
    expect(err.details).to.deep.equal({ imageArch: foreign, hostArch: HOST_ARCH });
  });

  it('a primary partition cut short by 4096 bytes fails at init, naming the object', async () => {
    const err = await failure('sif-truncated.sif');
    expect(err.code).to.equal('ERR_SIF_TRUNCATED');
    expect(err.message).to.match(/object 1 \("rootfs"\) occupies bytes 32768-40960 but the file is only 36864 bytes long/);
  });
});

describe('host architecture (what SIF partitions are checked against)', () => {
  it(`hostArch() is the Go name of process.arch (${process.arch} -> ${HOST_ARCH})`, () => {
    expect(hostArch()).to.equal(HOST_ARCH);
    if (process.arch === 'x64') expect(hostArch()).to.equal('amd64');
    if (process.arch === 'arm64') expect(hostArch()).to.equal('arm64');
  });

  it('maps every Node architecture to its Go name (x64 -> amd64, ia32 -> 386, arm64 -> arm64, mipsel -> mipsle, ...)', () => {
    const real = Object.getOwnPropertyDescriptor(process, 'arch')!;
    const nodeArchs = ['x64', 'ia32', 'arm64', 'arm', 's390x', 'riscv64', 'loong64', 'mips', 'mipsel', 'ppc64'];
    const got: Record<string, string> = {};
    try {
      for (const a of nodeArchs) {
        Object.defineProperty(process, 'arch', { ...real, value: a });
        got[a] = hostArch();
      }
    } finally {
      Object.defineProperty(process, 'arch', real);
    }
    expect(process.arch).to.equal(real.value);
    expect(got).to.deep.equal(Object.fromEntries(nodeArchs.map((a) => [a, goArchOf(a)])));
    expect(got).to.deep.include({ x64: 'amd64', ia32: '386', arm64: 'arm64', mipsel: 'mipsle' });
  });

  it('archRunnable() agrees with what this host runs: itself, its 32-bit sibling, "unknown"; nothing foreign without emulators', async function () {
    const archs = ['unknown', 'amd64', '386', 'arm64', 'arm', 's390x', 'riscv64', 'ppc64le', 'mips64le', 'loong64'];
    const expected = archs.map((a) => [a, expectedRunnable(a)] as const);
    const judged = expected.filter(([, r]) => r !== undefined);
    if (judged.length < archs.length) console.log(`      (foreign architectures not judged: ${emulatorsSkipReason('them')})`);
    const got = await Promise.all(judged.map(async ([a]) => [a, await archRunnable(a)] as const));
    expect(got).to.deep.equal(judged);
    expect(await archRunnable(HOST_ARCH)).to.equal(true);
    if (HOST_ARCH === 'amd64') expect(await archRunnable('386')).to.equal(true);
  });

  it('binfmt_misc: only an enabled fix-binary ("F") entry with the architecture\'s ELF magic makes a foreign image runnable', async () => {
    // The magic strings are those of qemu's binfmt registrations (qemu-binfmt-conf.sh), as
    // /proc/sys/fs/binfmt_misc/<entry> shows them.
    const aarch64 = '7f454c460201010000000000000000000200b700';
    const s390x = '7f454c46020201000000000000000000' + '00020016';
    const dir = fs.mkdtempSync(path.join(testTmp, 'binfmt-'));
    const entry = (name: string, lines: string[]) => fs.writeFileSync(path.join(dir, name), lines.join('\n') + '\n');
    fs.writeFileSync(path.join(dir, 'status'), 'enabled\n');
    fs.writeFileSync(path.join(dir, 'register'), '');
    const qemu = (state: string, flags: string, magic: string) => [state, 'interpreter /usr/libexec/qemu-binfmt/qemu-x', `flags: ${flags}`, 'offset 0', `magic ${magic}`, 'mask fffffffffffefe00fffffffffffffffffeffffff'];
    expect(await binfmtRuns('arm64', dir)).to.equal(false); // no entries
    entry('qemu-aarch64', qemu('enabled', 'OCF', aarch64));
    expect(await binfmtRuns('arm64', dir)).to.equal(true);
    expect(await binfmtRuns('s390x', dir)).to.equal(false);
    entry('qemu-aarch64', qemu('disabled', 'OCF', aarch64));
    expect(await binfmtRuns('arm64', dir)).to.equal(false);
    entry('qemu-aarch64', qemu('enabled', 'OC', aarch64)); // without F the interpreter is not reachable in a container
    expect(await binfmtRuns('arm64', dir)).to.equal(false);
    entry('qemu-s390x', qemu('enabled', 'F', s390x));
    expect(await binfmtRuns('s390x', dir)).to.equal(true);
    fs.writeFileSync(path.join(dir, 'status'), 'disabled\n');
    expect(await binfmtRuns('s390x', dir)).to.equal(false);
  });
});

describe('SIF partitions and sections (beyond Apptainer)', () => {
  it('full image: root partition, named sections in slot order, overlay with group rule', async () => {
    await using img = await init(fixture('sif-overlay.sif'));
    expect(img.usage).to.equal(RootFsUsage | OverlayUsage);
    expect(img.partitions.map((p) => [p.name, p.id, p.type, p.allowedUsage])).to.deep.equal([
      [RootFs, 4, SQUASHFS, RootFsUsage],
      ['overlay', 5, EXT3, OverlayUsage],
    ]);
    expect(img.sections.map((s) => [s.name, s.id, s.type])).to.deep.equal([
      ['', 1, 0x4001],
      ['inspect-metadata.json', 2, 0x4006],
      ['oci-config.json', 3, 0x4006],
    ]);
    expect(img.getOverlayPartitions().map((p) => p.name)).to.deep.equal(['overlay']);
    expect(img.getRootFsPartition().id).to.equal(4);
  });

  it('an overlay outside the root filesystem group is skipped with a warning', async () => {
    await using img = await init(fixture('sif-overlay-othergroup.sif'));
    expect(img.partitions.map((p) => p.name)).to.deep.equal([RootFs]);
    expect(img.usage).to.equal(RootFsUsage);
    expect(img.warnings).to.deep.equal([`overlay partition 2 ("overlay") is in group 2, not the root filesystem's group 1; skipped`]);
  });

  it('an overlay whose header check fails is skipped with a warning (Apptainer: silently)', async () => {
    await using img = await init(fixture('sif-overlay-bad.sif'));
    expect(img.partitions).to.have.length(1);
    expect(img.warnings[0]).to.match(/overlay partition 2 \("overlay"\) does not hold a valid ext3 filesystem: .*skipped$/);
  });

  it('data partitions of both filesystems; an ext4 one is skipped saying why', async () => {
    {
      await using img = await init(fixture('sif-data.sif'));
      expect(img.usage).to.equal(RootFsUsage | DataUsage);
      expect(img.getDataPartitions().map((p) => [p.name, p.type])).to.deep.equal([
        ['data', SQUASHFS],
        ['scratch', EXT3],
      ]);
    }
    await using img = await init(fixture('sif-data-ext4.sif'));
    expect(img.getDataPartitions()).to.deep.equal([]);
    expect(img.warnings[0]).to.match(/data partition 2 \("ext4-data"\).*ext4 features extent/);
  });

  it('several primary partitions: no root filesystem, and the error says why', async () => {
    await using img = await init(fixture('sif-multi-primsys.sif'));
    expect(img.partitions).to.deep.equal([]);
    expect(img.warnings).to.deep.equal(['image has 2 primary partitions (ids 1, 2); none is used as the root filesystem']);
    expect(() => img.getRootFsPartition()).to.throw(ImgmountError, /no root filesystem found in .*: image has 2 primary partitions/);
  });

  it('raw, encrypted and gocryptfs primary partitions keep their types without a header check', async () => {
    {
      await using raw = await init(fixture('sif-raw.sif'));
      expect(raw.partitions[0]!.type).to.equal(RAW);
      expect(raw.encryptedRootFs()).to.equal('');
    }
    {
      await using enc = await init(fixture('sif-encrypted.sif'));
      expect(enc.partitions[0]!.type).to.equal(ENCRYPTSQUASHFS);
      expect(enc.encryptedRootFs()).to.equal('encryptfs');
      expect(enc.hasEncryptedRootFs()).to.equal(true);
      expect(enc.sections[0]!.type).to.equal(0x4008);
    }
    await using gc = await init(fixture('sif-gocryptfs.sif'));
    expect(gc.partitions[0]!.type).to.equal(GOCRYPTFSSQUASHFS);
    expect(gc.encryptedRootFs()).to.equal('gocryptfs');
  });

  it('an archive primary partition is a hard error', async () => {
    const err = await failure('sif-archive.sif');
    expect(err.code).to.equal('ERR_PARTITION_INVALID');
    expect(err.message).to.match(/filesystem type Archive \(3\), which cannot be mounted/);
  });

  it('an unsupported SIF version is a hard error carrying the bytes', async () => {
    const err = await failure('sif-bad-version.sif');
    expect(err.code).to.equal('ERR_SIF_UNSUPPORTED_VERSION');
    expect(err.message).to.match(/"02\\0"/);
  });

  it('the SIF magic must be at offset 32: a squashfs that merely contains it is still squashfs', async () => {
    const p = path.join(testTmp, 'contains-magic.sqfs');
    const b = Buffer.from(fs.readFileSync(fixture('hdr-args.sqfs')));
    // "#!/usr/bin/env run-singularity --app foo\n" is 41 bytes; put the magic text in the header line.
    const withMagic = Buffer.concat([Buffer.from('#!/bin/sh SIF_MAGIC\n'), b.subarray(41)]);
    fs.writeFileSync(p, withMagic);
    await using img = await init(p);
    expect(img.type).to.equal(SQUASHFS);
  });

  it('a writable SIF with an ext3 root opens read-write and write-locks the partition', async () => {
    const p = path.join(testTmp, 'rw-root.sif');
    fs.copyFileSync(fixture('sif-ext3-root.sif'), p);
    await using img = await init(p, true);
    expect(img.writable).to.equal(true);
    expect(fdFlags(img.fd) & O_ACCMODE).to.equal(fs.constants.O_RDWR);
    let err: ImgmountError | undefined;
    try {
      await init(p, false);
    } catch (e) {
      err = e as ImgmountError;
    }
    expect(err?.code).to.equal('ERR_IMAGE_LOCKED');
  });

  it('a writable SIF with a squashfs root is allowed at init (the mount decides later)', async () => {
    const p = path.join(testTmp, 'rw-squash.sif');
    fs.copyFileSync(fixture('sif-basic.sif'), p);
    await using img = await init(p, true);
    expect(img.writable).to.equal(true);
  });
});
