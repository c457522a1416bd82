// Every call that waits takes { signal }: an abort before it starts (or between its steps)
// rejects with AbortError (code ABORT_ERR) and changes nothing.
import { expect } from 'chai';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { bufferSource, type ByteSource } from '../../../lib/io/byte-source';
import { fromJSON } from '../../../lib/image/from-json';
import { init } from '../../../lib/image/init';
import { capabilities } from '../../../lib/mount/capabilities';
import { readMountInfo } from '../../../lib/mount/mountinfo';
import { createSif, loadSif, openSifWriter } from '../../../lib/sif';
import { fixture } from '../../support/fixtures';
import { testTmp } from '../../support/hooks';

async function codeOf(p: Promise<unknown>): Promise<string | undefined> {
  return p.then(
    () => 'resolved',
    (e: unknown) => (e as { code?: string }).code,
  );
}

function aborted(): AbortSignal {
  const ac = new AbortController();
  ac.abort();
  return ac.signal;
}

describe('signals: an aborted call changes nothing', () => {
  it('loadSif reads nothing; an abort between the header and the table stops it there', async () => {
    const bytes = fs.readFileSync(fixture('sif-basic.sif'));
    const reads: Array<[number, number]> = [];
    const counting = (ac?: AbortController): ByteSource => {
      const src = bufferSource(bytes);
      return {
        size: src.size,
        read: async (o, l) => {
          reads.push([o, l]);
          if (ac && reads.length === 1) ac.abort();
          return src.read(o, l);
        },
      };
    };
    expect(await codeOf(loadSif(counting(), { signal: aborted() }))).to.equal('ABORT_ERR');
    expect(reads).to.deep.equal([]);
    const ac = new AbortController();
    expect(await codeOf(loadSif(counting(ac), { signal: ac.signal }))).to.equal('ABORT_ERR');
    expect(reads).to.deep.equal([[0, 128]]);
  });

  it('createSif creates no file, openSifWriter opens nothing', async () => {
    const p = path.join(testTmp, 'aborted.sif');
    expect(await codeOf(createSif(p, { signal: aborted() }))).to.equal('ABORT_ERR');
    expect(fs.existsSync(p)).to.equal(false);
    const copy = path.join(testTmp, 'aborted-open.sif');
    fs.copyFileSync(fixture('sif-basic.sif'), copy);
    const before = fs.readFileSync(copy);
    expect(await codeOf(openSifWriter(copy, { signal: aborted() }))).to.equal('ABORT_ERR');
    expect(fs.readFileSync(copy).equals(before)).to.equal(true);
  });

  it('fromJSON, capabilities and readMountInfo reject with ABORT_ERR', async () => {
    const img = await init(fixture('sif-basic.sif'));
    try {
      expect(await codeOf(fromJSON(img.toJSON(), { fd: img.fd, ownsFd: false, signal: aborted() }))).to.equal('ABORT_ERR');
    } finally {
      await img.close();
    }
    expect(await codeOf(capabilities({ signal: aborted() }))).to.equal('ABORT_ERR');
    expect(await codeOf(readMountInfo('self', { signal: aborted() }))).to.equal('ABORT_ERR');
    // Not aborted: they answer.
    expect((await readMountInfo('self', { signal: new AbortController().signal })).length).to.be.greaterThan(0);
  });
});
