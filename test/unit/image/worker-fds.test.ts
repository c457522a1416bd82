// The image's fd goes back the way it came (lib/io/fd.ts): opened by the addon, closed by it;
// reopened by fs.open (writable), closed by fs.close. In a worker thread Node tracks the fds
// fs.open gave it and closes those fs.close did not take back at the worker's exit, and warns
// when fs.close closes one it did not give: either mix-up shows here, as a warning or as an
// fd of another thread closed under it.
import { expect } from 'chai';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Worker } from 'node:worker_threads';
import { testTmp } from '../../support/hooks';
import { fixture } from '../../support/fixtures';
import { distLib } from '../../support/kernel';

interface Report {
  warnings: string[];
  error?: string;
  opened: number;
}

function inWorker(images: { sif: string; ext3: string }): Promise<Report> {
  const code = `
    const { parentPort, workerData } = require('node:worker_threads');
    const { init } = require(${JSON.stringify(distLib)});
    const warnings = [];
    process.on('warning', (w) => warnings.push(w.message));
    (async () => {
      let opened = 0;
      for (let i = 0; i < 20; i++) {
        // Read-only (the addon's fd) and read-write (reopened through fs.open), side by side.
        const [a, b] = await Promise.all([init(workerData.sif), init(workerData.ext3, true)]);
        opened += 2;
        await Promise.all([a.close(), b.close()]);
      }
      // Let any warning of the last closes arrive.
      await new Promise((r) => setImmediate(r));
      parentPort.postMessage({ warnings, opened });
    })().catch((e) => parentPort.postMessage({ warnings, opened: 0, error: String(e && e.stack) }));`;
  return new Promise((resolve, reject) => {
    const w = new Worker(code, { eval: true, workerData: images });
    w.once('message', resolve);
    w.once('error', reject);
  });
}

describe('image fds in worker threads', () => {
  it('init() and close() in three workers at once: no fd warning, no fd closed twice', async () => {
    // A copy of the ext3 each: opened writable, it is locked for writing.
    const reports = await Promise.all(
      [0, 1, 2].map((i) => {
        const ext3 = path.join(testTmp, `worker-fds-${i}.ext3`);
        fs.copyFileSync(fixture('ext3.img'), ext3);
        return inWorker({ sif: fixture('sif-kernel.sif'), ext3 });
      }),
    );
    for (const r of reports) {
      expect(r.error, r.error).to.equal(undefined);
      expect(r.opened).to.equal(40);
      expect(r.warnings).to.deep.equal([]);
    }
  });
});
