// fds the library opens itself (lib/io/fd.ts): closed and stat'ed on the pool, one hop each,
// with Node's errors.
import { expect } from 'chai';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { closeFd, fstatFd } from '../../../lib/io/fd';
import { testTmp } from '../../support/hooks';
import { countHops } from '../../support/hops';

describe('io/fd: fstat and close on the pool', () => {
  it('fstatFd: the open file, not its path; one hop', async () => {
    const file = path.join(testTmp, 'fd-stat.bin');
    fs.writeFileSync(file, 'twelve bytes');
    fs.chmodSync(file, 0o640);
    const fd = fs.openSync(file, 'r');
    try {
      fs.renameSync(file, `${file}.moved`);
      const { value: st, count } = await countHops(() => fstatFd(fd));
      expect(st.isFile()).to.equal(true);
      expect(st.size).to.equal(12);
      expect(st.mode & 0o7777).to.equal(0o640);
      expect(count.hops).to.equal(1);
    } finally {
      fs.closeSync(fd);
    }
  });

  it('closeFd closes, in one hop; a closed fd is EBADF for both', async () => {
    const fd = fs.openSync(path.join(testTmp, 'fd-close.bin'), 'w');
    const { count } = await countHops(() => closeFd(fd));
    expect(count.hops).to.equal(1);
    expect(() => fs.fstatSync(fd)).to.throw().with.property('code', 'EBADF');
    const stat = (await fstatFd(fd).catch((e: unknown) => e)) as NodeJS.ErrnoException;
    expect(stat.code).to.equal('EBADF');
    expect(stat.syscall).to.equal('fstat');
    const close = (await closeFd(fd).catch((e: unknown) => e)) as NodeJS.ErrnoException;
    expect(close.code).to.equal('EBADF');
    expect(close.syscall).to.equal('close');
  });
});
