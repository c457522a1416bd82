// Attack class 6, resource exhaustion by headers: whatever a SIF header claims, the reader
// and init() read (and so allocate) at most a documented number of bytes. Bounds are asserted
// by counting what is asked of the ByteSource, never by the clock.
import { expect } from 'chai';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ImgmountError } from '../../../lib/errors';
import { MAX_DETECTION_READ, PARTITION_PROBE_SIZE, PROBE_SIZE } from '../../../lib/image/constants';
import { hostArch } from '../../../lib/image/arch';
import { Image } from '../../../lib/image/image';
import { detectionTestHooks, init } from '../../../lib/image/init';
import { fdSource, type ByteSource } from '../../../lib/io/byte-source';
import {
  DESCRIPTOR_SIZE,
  DataPartition,
  FsSquash,
  HEADER_SIZE,
  MAX_DESCRIPTORS,
  MemoryTarget,
  PartData,
  PartPrimSys,
  createSif,
  loadSif,
  type SifObjectInput,
} from '../../../lib/sif';
import { H } from '../../../lib/sif/codec';
import { fixture } from '../../support/fixtures';
import { testTmp } from '../../support/hooks';
import { expectCode } from '../sif/helpers';

interface Count {
  reads: number;
  bytes: number;
}

/**
 * A ByteSource that counts the bytes asked of it, and refuses to go past `budget` (so code
 * without the bound fails fast here instead of reading hundreds of megabytes).
 */
function counting(inner: ByteSource, budget: number): { source: ByteSource; count: Count } {
  const count: Count = { reads: 0, bytes: 0 };
  const source: ByteSource = {
    size: inner.size,
    read(offset, length) {
      count.reads++;
      count.bytes += length;
      if (count.bytes > budget) return Promise.reject(new Error(`asked for ${count.bytes} bytes in all, over the ${budget}-byte budget`));
      return inner.read(offset, length);
    },
  };
  return { source, count };
}

/** init() with every detection read counted (through init's test seam): the image (closed) or the error. */
async function countedInit(file: string): Promise<{ outcome: unknown; count: Count }> {
  let count: Count = { reads: 0, bytes: 0 };
  detectionTestHooks.wrapSource = (s) => {
    const c = counting(s, MAX_DETECTION_READ);
    count = c.count;
    return c.source;
  };
  try {
    const outcome = await init(file).then(
      async (img) => {
        await img.close();
        return img;
      },
      (err: unknown) => err,
    );
    return { outcome, count };
  } finally {
    delete detectionTestHooks.wrapSource;
  }
}

/**
 * A valid SIF header claiming `total` descriptor slots (all free) at offset 4096, with the
 * file truncated (sparsely) to exactly the size that would hold the table.
 */
async function sparseSif(name: string, total: number): Promise<string> {
  const m = new MemoryTarget();
  await (await createSif(m, { deterministic: true, capacity: 0 })).close();
  const head = Buffer.from(m.contents());
  const table = total * DESCRIPTOR_SIZE;
  head.writeBigInt64LE(BigInt(total), H.descriptorsTotal);
  head.writeBigInt64LE(BigInt(total), H.descriptorsFree);
  head.writeBigInt64LE(BigInt(table), H.descriptorsSize);
  head.writeBigInt64LE(BigInt(4096 + table), H.dataOffset);
  head.writeBigInt64LE(0n, H.dataSize);
  const file = path.join(testTmp, name);
  const fd = fs.openSync(file, 'w');
  try {
    fs.writeSync(fd, head, 0, head.length, 0);
    fs.ftruncateSync(fd, 4096 + table);
  } finally {
    fs.closeSync(fd);
  }
  return file;
}

function partition(data: Buffer, partType: number): SifObjectInput {
  return { dataType: DataPartition, data, partition: { fsType: FsSquash, partType, arch: hostArch() } };
}

describe('detection bound (hostile headers)', function () {
  // Building and reading a 4 MiB image with 1024 partitions is not instant on a slow disk.
  this.timeout(60000);

  it('the bound is the documented one: 4 KiB head, 128-byte header, 1024 × (585-byte slot + 2 KiB partition header)', () => {
    expect(MAX_DESCRIPTORS).to.equal(1024);
    expect(PARTITION_PROBE_SIZE).to.equal(2048);
    expect(MAX_DETECTION_READ).to.equal(PROBE_SIZE + HEADER_SIZE + 1024 * (585 + 2048));
    expect(MAX_DETECTION_READ).to.equal(2_700_416);
  });

  it('a sparse file claiming 2^20 descriptors: loadSif refuses it after reading only the 128-byte header', async () => {
    const file = await sparseSif('sparse-2^20.sif', 2 ** 20);
    expect(fs.statSync(file).size).to.equal(4096 + 2 ** 20 * 585); // 613 MB that a naive reader would read
    const fd = fs.openSync(file, 'r');
    try {
      const { source, count } = counting(fdSource(fd, fs.fstatSync(fd).size), MAX_DETECTION_READ);
      const e = await expectCode(loadSif(source, { path: file }), 'ERR_SIF_INVALID', /descriptorsTotal .* is 1048576, above the limit of 1024 descriptors/);
      expect(e.details).to.deep.include({ field: 'descriptorsTotal', value: 2 ** 20, limit: 1024 });
      expect(count).to.deep.equal({ reads: 1, bytes: HEADER_SIZE });
    } finally {
      fs.closeSync(fd);
    }
  });

  it('init() of that file: the typed error, and no more than the 4 KiB probe and the header read', async () => {
    const file = await sparseSif('sparse-init-2^20.sif', 2 ** 20);
    const { outcome, count } = await countedInit(file);
    const err = outcome as ImgmountError;
    expect(err).to.be.instanceOf(ImgmountError);
    expect(err.code).to.equal('ERR_SIF_INVALID');
    expect(err.message).to.match(/descriptorsTotal .* above the limit of 1024 descriptors/);
    // The 4 KiB head and the SIF header, nothing of the table (and the seam saw both reads).
    expect(count).to.deep.equal({ reads: 2, bytes: PROBE_SIZE + HEADER_SIZE });
  });

  it('exactly the cap (1024 slots) loads; 1025 is refused with ERR_SIF_INVALID naming the field and the limit', async () => {
    const atCap = await sparseSif('cap.sif', MAX_DESCRIPTORS);
    const ok = await countedInit(atCap);
    const img = ok.outcome as Image;
    expect(img).to.be.instanceOf(Image);
    expect(img.partitions).to.deep.equal([]);
    expect(ok.count.bytes).to.equal(PROBE_SIZE + HEADER_SIZE + MAX_DESCRIPTORS * DESCRIPTOR_SIZE);

    const over = await sparseSif('cap-plus-one.sif', MAX_DESCRIPTORS + 1);
    const bad = await countedInit(over);
    const err = bad.outcome as ImgmountError;
    expect(err.code).to.equal('ERR_SIF_INVALID');
    expect(err.details).to.deep.include({ field: 'descriptorsTotal', value: 1025, limit: 1024 });
    expect(bad.count).to.deep.equal({ reads: 2, bytes: PROBE_SIZE + HEADER_SIZE });
  });

  it('bare squashfs and ext3 images (launch header or not) are checked within the one 4 KiB head read', async () => {
    for (const name of ['sq-gzip.sqfs', 'hdr-lf.sqfs', 'ext3.img', 'hdr-lf.ext3', 'ext4.img']) {
      const { outcome, count } = await countedInit(fixture(name));
      expect(count, name).to.deep.equal({ reads: 1, bytes: PROBE_SIZE });
      if (name !== 'ext4.img') expect(outcome, name).to.be.instanceOf(Image);
      else expect((outcome as ImgmountError).code).to.equal('ERR_EXT3_UNSUPPORTED_FEATURES');
    }
  });

  it('a SIF at the cap with 1024 partitions: every partition is checked and init() reads within MAX_DETECTION_READ', async () => {
    expect(MAX_DESCRIPTORS).to.equal(1024); // never build a million-partition file here
    const sq = fs.readFileSync(fixture('sq-xz.sqfs'));
    expect(sq.length).to.be.at.least(PARTITION_PROBE_SIZE); // so each header read is a full one
    const objects = [partition(sq, PartPrimSys), ...Array.from({ length: MAX_DESCRIPTORS - 1 }, () => partition(sq, PartData))];
    const file = path.join(testTmp, 'cap-partitions.sif');
    await (await createSif(file, { deterministic: true, capacity: MAX_DESCRIPTORS, objects })).close();
    const { outcome, count } = await countedInit(file);
    const img = outcome as Image;
    expect(img).to.be.instanceOf(Image);
    expect(img.partitions.length).to.equal(MAX_DESCRIPTORS);
    expect(count.reads).to.equal(3 + MAX_DESCRIPTORS); // head, header, table, one per partition
    expect(count.bytes).to.equal(MAX_DETECTION_READ);
  });
});
