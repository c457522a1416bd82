// Positional reads (lib/io/byte-source.ts): over memory and over an fd, clamped to the size
// the source was given, short reads from the OS retried until the range or EOF.
import { expect } from 'chai';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { bufferSource, fdSource, preadFully } from '../../../lib/io/byte-source';
import { testTmp } from '../../support/hooks';
// The module object itself (not an import-star copy), so a stub of read() is what the library calls.
import nodeFs = require('node:fs');

const text = (b: Buffer) => b.toString('latin1');

describe('io/byte-source: positional reads', () => {
  let file: string;
  let fd: number;
  before(() => {
    file = path.join(testTmp, 'byte-source.bin');
    fs.writeFileSync(file, 'abcdefghijklmnop');
    fd = fs.openSync(file, 'r');
  });
  after(() => fs.closeSync(fd));

  describe('bufferSource', () => {
    const src = bufferSource(Buffer.from('abcdefgh'));

    it('has the buffer length as size and reads ranges of it', async () => {
      expect(src.size).to.equal(8);
      expect(text(await src.read(0, 8))).to.equal('abcdefgh');
      expect(text(await src.read(2, 3))).to.equal('cde');
    });

    it('gives fewer bytes only at the end, none past it', async () => {
      expect(text(await src.read(6, 10))).to.equal('gh');
      expect((await src.read(8, 1)).length).to.equal(0);
      expect((await src.read(100, 4)).length).to.equal(0);
      expect((await src.read(3, 0)).length).to.equal(0);
    });

    it('has no prefetch', () => {
      expect(src.prefetch).to.equal(undefined);
    });
  });

  describe('fdSource', () => {
    it('reads with pread: the same range twice, in any order', async () => {
      const src = fdSource(fd, 16);
      expect(src.size).to.equal(16);
      expect(text(await src.read(10, 4))).to.equal('klmn');
      expect(text(await src.read(0, 3))).to.equal('abc');
      expect(text(await src.read(10, 4))).to.equal('klmn');
    });

    it('never reads past the size it was given, even when the file goes on', async () => {
      const src = fdSource(fd, 4);
      expect(text(await src.read(2, 10))).to.equal('cd');
      expect((await src.read(4, 10)).length).to.equal(0);
      expect((await src.read(9, 2)).length).to.equal(0);
    });

    it('stops at EOF when the file is shorter than the size said', async () => {
      const src = fdSource(fd, 100);
      expect(text(await src.read(12, 50))).to.equal('mnop');
    });
  });

  describe('preadFully', () => {
    it('retries short reads from the OS until the range is complete', async () => {
      const real = nodeFs.read;
      const asked: number[] = [];
      // At most 3 bytes per read, as a pipe-backed or network file system may return.
      (nodeFs as { read: unknown }).read = (f: number, b: Buffer, off: number, len: number, pos: number, cb: (e: Error | null, n: number) => void) => {
        asked.push(pos);
        return real(f, b, off, Math.min(len, 3), pos, cb);
      };
      try {
        expect(text(await preadFully(fd, 1, 10))).to.equal('bcdefghijk');
      } finally {
        (nodeFs as { read: unknown }).read = real;
      }
      expect(asked).to.deep.equal([1, 4, 7, 10]);
    });

    it('returns what there is up to EOF, and nothing for a zero length', async () => {
      expect(text(await preadFully(fd, 14, 8))).to.equal('op');
      expect((await preadFully(fd, 16, 8)).length).to.equal(0);
      expect((await preadFully(fd, 0, 0)).length).to.equal(0);
    });

    it('rejects with the fs error (EBADF for a closed fd)', async () => {
      const closed = fs.openSync(file, 'r');
      fs.closeSync(closed);
      const err = (await preadFully(closed, 0, 4).catch((e: unknown) => e)) as NodeJS.ErrnoException;
      expect(err.code).to.equal('EBADF');
      expect(err.syscall).to.equal('read');
    });
  });
});
