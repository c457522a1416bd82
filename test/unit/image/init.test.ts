// init(): format detection on real files, the soft/hard error split, file-type checks,
// writable handling, locks, fd hygiene and the JSON round trip.
import { expect } from 'chai';
import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import {
  DataUsage,
  EXT3,
  Image,
  ImgmountError,
  OverlayUsage,
  RootFs,
  RootFsUsage,
  SANDBOX,
  SIF,
  SQUASHFS,
  fromJSON,
  init,
  isReadOnlyFilesystem,
} from '../../../lib';
import { O_ACCMODE, O_CLOEXEC, fdFlags, openFds } from '../../support/fds';
import { fixture } from '../../support/fixtures';
import { testTmp } from '../../support/hooks';
import { repoRoot } from '../../support/paths';
import { skip } from '../../support/skip';

async function initError(p: string, writable = false): Promise<ImgmountError> {
  try {
    const img = await init(p, writable);
    await img.close();
  } catch (err) {
    return err as ImgmountError;
  }
  throw new Error(`init(${p}) succeeded but should have failed`);
}

describe('init: format detection', () => {
  const cases: Array<[string, number, number, number]> = [
    // fixture, type, partition offset, partition size (-1: file size - offset)
    ['sq-gzip.sqfs', SQUASHFS, 0, -1],
    ['sq-lzo.sqfs', SQUASHFS, 0, -1],
    ['sq-lz4.sqfs', SQUASHFS, 0, -1],
    ['sq-xz.sqfs', SQUASHFS, 0, -1],
    ['sq-zstd.sqfs', SQUASHFS, 0, -1],
    ['sq-lzma.sqfs', SQUASHFS, 0, -1],
    ['hdr-lf.sqfs', SQUASHFS, 31, -1],
    ['hdr-crlf.sqfs', SQUASHFS, 32, -1],
    ['hdr-args.sqfs', SQUASHFS, 41, -1],
    ['ext3.img', EXT3, 0, -1],
    ['hdr-lf.ext3', EXT3, 31, -1],
  ];
  for (const [name, type, offset, size] of cases) {
    it(`${name}: one root partition at ${offset}`, async () => {
      const p = fixture(name);
      await using img = await init(p);
      expect(img.type).to.equal(type);
      expect(img.path).to.equal(fs.realpathSync(p));
      expect(img.name).to.equal(name);
      expect(img.source).to.equal(`/proc/self/fd/${img.fd}`);
      expect(img.partitions).to.have.length(1);
      const part = img.partitions[0]!;
      expect(part).to.deep.include({ name: RootFs, offset, id: 1, type });
      expect(part.size).to.equal(size < 0 ? fs.statSync(p).size - offset : size);
      expect(part.allowedUsage).to.equal(RootFsUsage | OverlayUsage | DataUsage);
      expect(img.usage).to.equal(RootFsUsage);
      expect(img.writable).to.equal(false);
    });
  }

  it('a directory is a sandbox with one empty root partition', async () => {
    await using img = await init(fixture('rootfs'));
    expect(img.type).to.equal(SANDBOX);
    expect(img.partitions).to.deep.equal([
      { name: RootFs, size: 0, offset: 0, id: 1, type: SANDBOX, allowedUsage: RootFsUsage | OverlayUsage | DataUsage },
    ]);
  });

  it('probes files smaller than 2048 bytes on what they hold (Apptainer: unknown)', async () => {
    const p = fixture('sq-tiny-nopad.sqfs');
    expect(fs.statSync(p).size).to.be.below(2048);
    await using img = await init(p);
    expect(img.type).to.equal(SQUASHFS);
    expect(img.partitions[0]!.size).to.equal(fs.statSync(p).size);
  });

  it('resolves symlinks and relative paths', async () => {
    const link = path.join(testTmp, 'link-to-squashfs');
    fs.symlinkSync(fixture('sq-gzip.sqfs'), link);
    const rel = path.relative(process.cwd(), link);
    await using img = await init(rel);
    expect(img.path).to.equal(fs.realpathSync(fixture('sq-gzip.sqfs')));
  });

  it('explains, per format, why an unknown file was rejected', async () => {
    const err = await initError(fixture('vfat.img'));
    expect(err.code).to.equal('ERR_IMAGE_UNKNOWN_FORMAT');
    expect(err.message).to.match(/^image format not recognized: /);
    const formats = (err.details!.rejections as Array<{ format: string }>).map((r) => r.format);
    expect(formats).to.deep.equal(['sandbox', 'sif', 'squashfs', 'ext3']);
    expect(err.message).to.match(/sif: no SIF_MAGIC at offset 32/);
    expect(err.message).to.match(/squashfs: no "hsqs" magic at offset 0/);
    expect(err.message).to.match(/ext3: no ext superblock magic 0xEF53 at offset 1080/);
  });

  it('says what an empty file, a text file and an HTML page are', async () => {
    expect((await initError(fixture('empty.bin'))).message).to.match(/the file is empty/);
    expect((await initError(fixture('error-page.html'))).message).to.match(/HTML page/);
    const yaml = path.join(testTmp, 'config.yaml');
    fs.writeFileSync(yaml, 'image: docker://alpine\nwritable: true\n');
    expect((await initError(yaml)).message).to.match(/looks like text/);
  });

  it('stops at a hard error instead of trying later formats', async () => {
    const cases: Array<[string, string, RegExp]> = [
      ['sq-comp7.sqfs', 'ERR_SQUASHFS_INVALID', /unknown compression algorithm value 7/],
      ['sq-bigendian.sqfs', 'ERR_SQUASHFS_UNSUPPORTED', /big-endian/],
      ['sq-truncated.sqfs', 'ERR_SQUASHFS_INVALID', /truncated image/],
      ['ext2.img', 'ERR_EXT3_UNSUPPORTED_FEATURES', /no journal/],
      ['ext4.img', 'ERR_EXT3_UNSUPPORTED_FEATURES', /extent/],
      ['ext3-truncated.img', 'ERR_EXT3_INVALID', /truncated image/],
    ];
    for (const [name, code, re] of cases) {
      const err = await initError(fixture(name));
      expect(err.code, name).to.equal(code);
      expect(err.message, name).to.match(re);
    }
  });

  it('rejects a FIFO, a socket and a character device before opening them', async () => {
    const fifo = path.join(testTmp, 'a-fifo');
    execFileSync('mkfifo', [fifo]);
    const err = await initError(fifo); // would block forever if it were opened for reading
    expect(err.code).to.equal('ERR_IMAGE_UNSUPPORTED_FILE_TYPE');
    expect(err.message).to.match(/is a FIFO/);

    const sockPath = path.join(testTmp, 'a-socket');
    const server = net.createServer().listen(sockPath);
    await new Promise((r) => server.once('listening', r));
    try {
      expect((await initError(sockPath)).message).to.match(/is a socket/);
    } finally {
      server.close();
    }
    expect((await initError('/dev/null')).message).to.match(/is a character device/);
  });

  it('reports a missing file with ENOENT and the path', async () => {
    const err = (await initError(path.join(testTmp, 'no-such.sif'))) as unknown as NodeJS.ErrnoException;
    expect(err.code).to.equal('ENOENT');
    expect(err.errno).to.be.below(0);
    expect(err.message).to.match(/failed to retrieve path for .*no-such\.sif/);
  });

  it('rejects a non-string path with ERR_INVALID_ARG_TYPE and an empty one with ERR_INVALID_ARG_VALUE', async () => {
    let err: NodeJS.ErrnoException | undefined;
    try {
      await init(42 as unknown as string);
    } catch (e) {
      err = e as NodeJS.ErrnoException;
    }
    expect(err?.code).to.equal('ERR_INVALID_ARG_TYPE');
    expect((await initError('')).code).to.equal('ERR_INVALID_ARG_VALUE');
  });

  it('refuses a file the real user cannot read (checked as nobody)', function () {
    const unreadable = path.join(testTmp, 'unreadable.sqfs');
    fs.copyFileSync(fixture('sq-gzip.sqfs'), unreadable);
    fs.chmodSync(unreadable, 0o600);
    fs.chmodSync(testTmp, 0o755);
    if (process.getuid?.() !== 0) {
      skip(this, 'not running as root (needs root to run a child as nobody)');
    }
    // Load the library and its addon as root (the checkout may not be readable by nobody), then
    // drop to nobody.
    const lib = path.join(repoRoot, 'dist', 'lib');
    const script =
      `const lib = require(${JSON.stringify(lib)}); require(${JSON.stringify(path.join(lib, 'native', 'binding'))}).binding();` +
      ' process.setgid(65534); process.setuid(65534);' +
      `lib.init(${JSON.stringify(unreadable)}).then(() => console.log('OK'), (e) => console.log(e.code + ' ' + e.message))`;
    const r = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8' });
    expect(r.stdout.trim()).to.match(/^ERR_IMAGE_NOT_READABLE .*is not readable by the current user, check permissions$/);
  });
});

describe('init: fds, writable and locks', () => {
  it('sets close-on-exec on the image fd on purpose', async () => {
    await using img = await init(fixture('sq-gzip.sqfs'));
    expect(fdFlags(img.fd) & O_CLOEXEC).to.equal(O_CLOEXEC);
  });

  it('leaks no fd on success+close or on any failure', async () => {
    // Each fixture's outcome is known (the detection tests above): it is checked, not swallowed.
    const expected: Array<[string, number | string]> = [
      ['sq-gzip.sqfs', SQUASHFS],
      ['ext3.img', EXT3],
      ['rootfs', SANDBOX],
      ['vfat.img', 'ERR_IMAGE_UNKNOWN_FORMAT'],
      ['sq-comp7.sqfs', 'ERR_SQUASHFS_INVALID'],
      ['ext4.img', 'ERR_EXT3_UNSUPPORTED_FEATURES'],
      ['empty.bin', 'ERR_IMAGE_UNKNOWN_FORMAT'],
    ];
    const before = openFds();
    const outcomes: Array<[string, number | string]> = [];
    for (const [name] of expected) {
      try {
        const img = await init(fixture(name));
        await img.close();
        outcomes.push([name, img.type]);
      } catch (err) {
        outcomes.push([name, (err as ImgmountError).code]); // failures must clean up too
      }
    }
    expect(outcomes).to.deep.equal(expected);
    expect(openFds()).to.deep.equal(before);
  });

  it('close() is idempotent and later use is a clear error', async () => {
    const img = await init(fixture('sq-gzip.sqfs'));
    await img.close();
    await img.close();
    expect(img.closed).to.equal(true);
    expect(() => img.assertOpen()).to.throw(ImgmountError, /is closed/);
  });

  it('writable squashfs: ERR_READ_ONLY_FS, or a read-only image with readOnlyFallback', async () => {
    const err = await initError(fixture('sq-gzip.sqfs'), true);
    expect(err.code).to.equal('ERR_READ_ONLY_FS');
    expect(err.message).to.match(/squashfs is a read-only filesystem/);
    expect(isReadOnlyFilesystem(new Error('wrapped', { cause: new Error('twice', { cause: err }) }))).to.equal(true);
    expect(isReadOnlyFilesystem(new Error('other'))).to.equal(false);

    await using img = await init(fixture('sq-gzip.sqfs'), true, { readOnlyFallback: true });
    expect(img.writable).to.equal(false);
    expect(fdFlags(img.fd) & O_ACCMODE).to.equal(fs.constants.O_RDONLY);
    expect(img.warnings.join('\n')).to.match(/read-only filesystem/);
  });

  it('writable ext3 is opened read-write; read-only ext3 read-only', async () => {
    const p = path.join(testTmp, 'rw.ext3');
    fs.copyFileSync(fixture('ext3.img'), p);
    {
      await using rw = await init(p, true);
      expect(rw.writable).to.equal(true);
      expect(fdFlags(rw.fd) & O_ACCMODE).to.equal(fs.constants.O_RDWR);
      expect(fdFlags(rw.fd) & O_CLOEXEC).to.equal(O_CLOEXEC);
    }
    await using ro = await init(p, false);
    expect(ro.writable).to.equal(false);
    expect(fdFlags(ro.fd) & O_ACCMODE).to.equal(fs.constants.O_RDONLY);
  });

  it('ext3 locks: a second writer or a reader of a written image is refused, until close', async () => {
    const p = path.join(testTmp, 'locked.ext3');
    fs.copyFileSync(fixture('ext3.img'), p);
    const writer = await init(p, true);
    const second = await initError(p, true);
    expect(second.code).to.equal('ERR_IMAGE_LOCKED');
    expect(second.message).to.equal(`can't open ${fs.realpathSync(p)} for writing, currently in use by another process (a write lock covers partition "${RootFs}")`);
    const reader = await initError(p, false);
    expect(reader.code).to.equal('ERR_IMAGE_LOCKED');
    expect(reader.message).to.match(/for reading, currently in use for writing/);
    await writer.close();
    // Released with the fd: both now work, and readers share.
    const r1 = await init(p, false);
    const r2 = await init(p, false);
    expect((await initError(p, true)).code).to.equal('ERR_IMAGE_LOCKED');
    await r1.close();
    await r2.close();
    await (await init(p, true)).close();
  });

  it('the lock holds against another process too', async () => {
    const p = path.join(testTmp, 'locked2.ext3');
    fs.copyFileSync(fixture('ext3.img'), p);
    await using writer = await init(p, true);
    expect(writer.writable).to.equal(true);
    const lib = path.join(repoRoot, 'dist', 'lib');
    const r = spawnSync(
      process.execPath,
      ['-e', `require(${JSON.stringify(lib)}).init(${JSON.stringify(p)}, true).then(()=>console.log('OK'),e=>console.log(e.code))`],
      { encoding: 'utf8' },
    );
    expect(r.stdout.trim()).to.equal('ERR_IMAGE_LOCKED');
  });

  it('honours an aborted signal without leaking the fd', async () => {
    const before = openFds();
    let err: Error | undefined;
    try {
      await init(fixture('sq-gzip.sqfs'), false, { signal: AbortSignal.abort('stop') });
    } catch (e) {
      err = e as Error;
    }
    expect(err?.name).to.equal('AbortError');
    expect(openFds()).to.deep.equal(before);
  });
});

describe('Image: usage gate and JSON', () => {
  it('getters honour both the image usage and the partition usage', async () => {
    await using img = await init(fixture('sq-gzip.sqfs'));
    expect(img.getRootFsPartitions()).to.have.length(1);
    expect(img.getOverlayPartitions()).to.have.length(0); // image usage is RootFs only
    img.usage = OverlayUsage; // as Apptainer's engine does for --overlay images
    expect(img.getOverlayPartitions()).to.have.length(1);
    expect(img.getRootFsPartitions()).to.have.length(0);
    expect(() => img.getRootFsPartition()).to.throw(ImgmountError, /no root filesystem found/);
    img.usage = RootFsUsage | DataUsage;
    expect(img.getAllPartitions()).to.have.length(1);
    expect(img.getRootFsPartition().name).to.equal(RootFs);
  });

  it('serialises with Apptainer field names', async () => {
    await using img = await init(fixture('hdr-lf.sqfs'));
    const j = JSON.parse(JSON.stringify(img));
    expect(Object.keys(j)).to.deep.equal(['partitions', 'sections', 'path', 'name', 'source', 'type', 'fd', 'writable', 'usage']);
    expect(j.partitions[0]).to.deep.equal({
      name: RootFs,
      size: fs.statSync(fixture('hdr-lf.sqfs')).size - 31,
      offset: 31,
      id: 1,
      type: SQUASHFS,
      allowed_usage: 7,
    });
    expect(j.fd).to.equal(img.fd);
    expect(j.source).to.equal(`/proc/self/fd/${img.fd}`);
  });

  it('a closed image serialises the all-ones "no fd" sentinel exactly', async () => {
    const img = await init(fixture('sq-gzip.sqfs'));
    await img.close();
    expect(img.toJSONString()).to.contain('"fd":18446744073709551615');
  });

  it('fromJSON restores a usable image from JSON and the fd, following a rename', async () => {
    const p = path.join(testTmp, 'moved-before.sqfs');
    fs.copyFileSync(fixture('hdr-lf.sqfs'), p);
    const img = await init(p);
    const json = img.toJSONString();
    const moved = path.join(testTmp, 'moved-after.sqfs');
    fs.renameSync(p, moved);
    const restored = await fromJSON(json, { ownsFd: false });
    expect(restored).to.be.instanceOf(Image);
    expect(restored.path).to.equal(moved);
    expect(restored.partitions).to.deep.equal(img.partitions);
    expect(restored.type).to.equal(SQUASHFS);
    expect(restored.fd).to.equal(img.fd);
    await restored.close(); // does not own the fd
    expect(() => fs.fstatSync(img.fd)).to.not.throw();
    await img.close();
  });

  it('fromJSON refuses JSON that does not match the fd', async () => {
    await using img = await init(fixture('sq-gzip.sqfs'));
    const j = img.toJSON();
    const bad = async (patch: object, re: RegExp) => {
      let err: Error | undefined;
      try {
        await fromJSON({ ...j, ...patch }, { ownsFd: false });
      } catch (e) {
        err = e as Error;
      }
      expect(err?.message).to.match(re);
    };
    await bad({ type: SANDBOX }, /JSON says type 0x1002/);
    await bad({ writable: true }, /open read-only/);
    await bad({ partitions: [{ ...j.partitions![0]!, size: 1e9 }] }, /has only/);
    await bad({ fd: 999999 }, /is not open/);
    await bad({ path: '' }, /path is missing/);
    expect(SIF).to.equal(0x1003);
  });
});
