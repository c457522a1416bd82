// Partition and section readers: bounded streams over the image fd, with explicit
// name-or-index semantics.
import { expect } from 'chai';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ImgmountError, RootFs, SIFDescOCIConfigJSON, init, newPartitionReader, newSectionReader, readSection, type Image } from '../../../lib';
import { fixture } from '../../support/fixtures';
import { testTmp } from '../../support/hooks';
import { sifFixturesDir } from '../../support/paths';

const busybox = path.join(sifFixturesDir, 'apptainer', 'busybox_amd64.sif');

async function collect(stream: NodeJS.ReadableStream): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of stream) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

function errorOf(fn: () => unknown): ImgmountError & NodeJS.ErrnoException {
  try {
    fn();
  } catch (err) {
    return err as ImgmountError & NodeJS.ErrnoException;
  }
  throw new Error('expected an error');
}

describe('partition and section readers', () => {
  let img: Image;
  before(async () => {
    img = await init(busybox);
  });
  after(() => img.close());

  it('reads exactly the root partition by name, and the same bytes by index', async () => {
    // Object 4 of busybox_amd64.sif lies at 45056, 745472 bytes (shared/fixtures/sif/parser-output.txt),
    // its data's sha256 starting e64cd7d9b6be4672: where the bytes must come from, whatever init() says.
    const whole = fs.readFileSync(busybox);
    const expected = whole.subarray(45056, 45056 + 745472);
    expect(createHash('sha256').update(expected).digest('hex')).to.match(/^e64cd7d9b6be4672/);
    const byName = await collect(newPartitionReader(img, RootFs, -1));
    const byIndex = await collect(newPartitionReader(img, '', 0));
    expect(byName.length).to.equal(745472);
    expect(byName.equals(expected)).to.equal(true);
    expect(byIndex.equals(expected)).to.equal(true);
  });

  it('the partition stream is a squashfs that unsquashfs extracts /bin/busybox from', async function () {
    const out = path.join(testTmp, 'busybox-root.sqfs');
    fs.writeFileSync(out, await collect(newPartitionReader(img, RootFs)));
    const dest = path.join(testTmp, 'busybox-extract');
    execFileSync('unsquashfs', ['-no-progress', '-d', dest, out, '/bin/busybox'], { stdio: 'ignore' });
    const st = fs.statSync(path.join(dest, 'bin', 'busybox'));
    expect(st.isFile()).to.equal(true);
    expect(st.mode & 0o111).to.not.equal(0);
  });

  it('reads the OCI config section: Cmd[0] is "sh"', async () => {
    const cfg = JSON.parse((await collect(newSectionReader(img, SIFDescOCIConfigJSON))).toString());
    expect(cfg.Cmd[0]).to.equal('sh');
    expect(JSON.parse((await readSection(img, SIFDescOCIConfigJSON)).toString())).to.deep.equal(cfg);
  });

  it('readers do not move a shared file position: interleaved readers get their own bytes', async () => {
    const a = newSectionReader(img, 'oci-config.json');
    const b = newSectionReader(img, 'inspect-metadata.json');
    const [ba, bb] = await Promise.all([collect(a), collect(b)]);
    // Objects 3 (40960, 90 bytes) and 2 (36864, 1896 bytes) in parser-output.txt.
    const whole = fs.readFileSync(busybox);
    expect(ba.equals(whole.subarray(40960, 40960 + 90))).to.equal(true);
    expect(bb.equals(whole.subarray(36864, 36864 + 1896))).to.equal(true);
    expect(JSON.parse(bb.toString()).type).to.equal('container');
  });

  it('name and index: errors say what is wrong', () => {
    expect(errorOf(() => newPartitionReader(img, '', -1)).code).to.equal('ERR_INVALID_ARG_VALUE');
    const tooLarge = errorOf(() => newPartitionReader(img, '', 999999));
    expect(tooLarge.code).to.equal('ERR_NO_PARTITION');
    expect(tooLarge.message).to.equal('index 999999 too large, image contains 1 partition');
    expect(errorOf(() => newSectionReader(img, '', 99)).message).to.equal('index 99 too large, image contains 4 sections');
    expect(errorOf(() => newPartitionReader(img, 'fakefile.name', -1)).code).to.equal('ERR_NO_PARTITION');
    expect(errorOf(() => newSectionReader(img, 'fakefile.name', -1)).code).to.equal('ERR_NO_SECTION');
    expect(errorOf(() => newPartitionReader(null as unknown as Image, RootFs)).code).to.equal('ERR_INVALID_ARG_TYPE');
  });

  it('name and index together must both match (Apptainer accepted either)', async () => {
    expect(errorOf(() => newSectionReader(img, 'oci-config.json', 0)).message).to.match(/section 0 is named "\.", not "oci-config.json"/);
    const ok = await collect(newSectionReader(img, 'oci-config.json', 2));
    expect(ok.length).to.equal(90);
  });

  it('an empty name never matches an unnamed entry', () => {
    // Apptainer's name "" matched any entry with an empty name before reaching the index.
    expect(errorOf(() => newSectionReader(img, '', -1)).code).to.equal('ERR_INVALID_ARG_VALUE');
  });

  it('destroying a reader leaves the image fd open (fs.ReadStream would close it)', async () => {
    const r = newPartitionReader(img, RootFs);
    r.destroy();
    await new Promise((resolve) => setImmediate(resolve));
    expect(() => fs.fstatSync(img.fd)).to.not.throw();
    expect((await collect(newSectionReader(img, 'oci-config.json'))).length).to.equal(90);
  });

  it('a sandbox partition reads as zero bytes', async () => {
    await using sb = await init(fixture('rootfs'));
    expect((await collect(newPartitionReader(sb, RootFs))).length).to.equal(0);
  });

  it('a closed image cannot be read', async () => {
    const sq = await init(fixture('sq-gzip.sqfs'));
    await sq.close();
    expect(errorOf(() => newPartitionReader(sq, RootFs)).code).to.equal('ERR_IMAGE_CLOSED');
  });

  it('readSection refuses a section over the size limit', async () => {
    let err: ImgmountError | undefined;
    try {
      await readSection(img, 'inspect-metadata.json', 100);
    } catch (e) {
      err = e as ImgmountError;
    }
    expect(err?.code).to.equal('ERR_OUT_OF_RANGE');
  });

  it('bare image partition bytes hash like the file minus its launch header', async () => {
    await using sq = await init(fixture('hdr-lf.sqfs'));
    const data = await collect(newPartitionReader(sq, RootFs));
    const expected = fs.readFileSync(fixture('sq-gzip.sqfs'));
    expect(createHash('sha256').update(data).digest('hex')).to.equal(createHash('sha256').update(expected).digest('hex'));
  });
});
