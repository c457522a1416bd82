// A ByteSource whose first bytes came with the open (lib/io/window-source.ts): reads inside the
// window and inside announced (prefetched) ranges cost no hop, announced ranges cost one hop
// together, anything else is a pread. The window here differs from the file on purpose: what
// a read returns shows where it came from.
import { expect } from 'chai';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { windowSource } from '../../../lib/io/window-source';
import { testTmp } from '../../support/hooks';
import { countHops } from '../../support/hops';

const text = (b: Buffer | undefined) => b?.toString('latin1');

describe('io/window-source: reads from the window, prefetched ranges and the fd', () => {
  let fd: number;
  before(() => {
    const file = path.join(testTmp, 'window-source.bin');
    // 4 KiB: 'a'..'z' repeated, so the byte at offset N is String.fromCharCode(97 + N % 26).
    fs.writeFileSync(file, Buffer.from(Array.from({ length: 4096 }, (_, i) => 97 + (i % 26))));
    fd = fs.openSync(file, 'r');
  });
  after(() => fs.closeSync(fd));

  const window = () => Buffer.from('WINDOW--'); // what the open read: 8 bytes

  it('reads inside the window from it, without a hop', async () => {
    const src = windowSource(fd, 4096, window());
    expect(src.size).to.equal(4096);
    expect(text(src.cached(0, 6))).to.equal('WINDOW');
    const { value, count } = await countHops(() => src.read(2, 4));
    expect(text(value)).to.equal('NDOW');
    expect(count.hops).to.equal(0);
    expect(text(src.cached(8, 0))).to.equal('');
  });

  it('reads past the window from the file (one pread), and caches nothing of it', async () => {
    const src = windowSource(fd, 4096, window());
    expect(src.cached(6, 4)).to.equal(undefined);
    const { value, count } = await countHops(() => src.read(6, 4));
    expect(text(value)).to.equal('ghij');
    expect(count.hops).to.equal(1);
    expect(src.cached(6, 4)).to.equal(undefined);
  });

  it('clamps to the size: a short window read at the end, nothing past it', async () => {
    const src = windowSource(fd, 6, window());
    expect(text(src.cached(4, 10))).to.equal('OW');
    expect(text(await src.read(4, 10))).to.equal('OW');
    expect(text(await src.read(6, 10))).to.equal('');
    expect(text(await src.read(50, 10))).to.equal('');
  });

  it('prefetch reads every announced range beyond the window in one hop; reads of them then cost none', async () => {
    const src = windowSource(fd, 4096, window());
    const { count } = await countHops(() => src.prefetch!([[100, 4], [2000, 3], [2, 4]]));
    expect(count.hops).to.equal(1);
    expect(count.sites).to.have.length(1);
    expect(count.sites[0]).to.match(/^1 x imgmount:image\.preadRanges at io\/window-source\.js:/);
    expect(text(src.cached(100, 4))).to.equal('wxyz');
    expect(text(src.cached(100, 2)), 'a shorter read at the same offset').to.equal('wx');
    expect(src.cached(100, 5), 'a longer one').to.equal(undefined);
    expect(src.cached(101, 2), 'another offset').to.equal(undefined);
    const reads = await countHops(async () => [text(await src.read(2000, 3)), text(await src.read(2, 4))]);
    expect(reads.value).to.deep.equal(['yza', 'NDOW']);
    expect(reads.count.hops).to.equal(0);
  });

  it('prefetch skips what it holds already, empty ranges, ranges past the size and ranges in the window', async () => {
    const src = windowSource(fd, 4096, window());
    await src.prefetch!([[100, 4]]);
    const again = await countHops(() => src.prefetch!([[100, 4], [100, 2], [4096, 8], [5000, 1], [200, 0], [0, 8]]));
    expect(again.count.hops).to.equal(0);
    // A longer range at a held offset is read again.
    const longer = await countHops(() => src.prefetch!([[100, 8]]));
    expect(longer.count.hops).to.equal(1);
    expect(text(src.cached(100, 8))).to.equal('wxyzabcd');
    // A range that ends past the size is clamped.
    await src.prefetch!([[4094, 10]]);
    expect(text(src.cached(4094, 10))).to.equal('mn');
  });

  it('keeps at most 1024 prefetched ranges', async () => {
    const src = windowSource(fd, 4096, Buffer.alloc(0));
    const ranges = Array.from({ length: 1030 }, (_, i) => [i * 3, 2] as [number, number]);
    await src.prefetch!(ranges);
    expect(text(src.cached(1023 * 3, 2))).to.equal('bc'); // the 1024th range
    expect(src.cached(1024 * 3, 2)).to.equal(undefined);
    const more = await countHops(() => src.prefetch!([[4000, 2]]));
    expect(more.count.hops).to.equal(0);
    expect(src.cached(4000, 2)).to.equal(undefined);
  });
});
