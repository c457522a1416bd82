// Shared loop devices, and many concurrent attaches from two processes.
import { expect } from 'chai';
import * as fs from 'node:fs';
import { Worker } from 'node:worker_threads';
import { init } from '../../../lib';
import { attachLoop, loopCounters, loopStatus, type LoopDevice } from '../../../lib/loop';
import { root, type MountedRoot } from '../../../lib/root';
import { mountDir, testImages } from '../../support/images';
import { distLib, eventually, requireKernel, startChild } from '../../support/kernel';
import { boundLoops, registerMountPoint } from '../../support/leaks';

function boundTo(file: string): string[] {
  return boundLoops().filter((l) => l.backingFile === file).map((l) => l.name);
}

describe('kernel: shared loop devices', function () {
  before(function () {
    requireKernel(this);
  });

  it('reuses a device bound to the same file, offset, size and read-only flag', async () => {
    const img = testImages();
    const part = img.sifParts.squashfs;
    const reusedBefore = loopCounters().reused;
    const a = await attachLoop(img.sif, { offset: part.offset, sizeLimit: part.size, shared: true });
    const b = await attachLoop(img.sif, { offset: part.offset, sizeLimit: part.size, shared: true });
    try {
      expect(a.method).to.equal('configure');
      expect(a.owner).to.equal(true);
      expect(b.number).to.equal(a.number);
      expect(b.method).to.equal('shared');
      expect(b.owner).to.equal(false);
      expect(loopCounters().reused).to.equal(reusedBefore + 1);
      // Closing the reusing handle leaves the device to its owner.
      await b.close();
      expect((await loopStatus(a.number)).bound).to.equal(true);
    } finally {
      await b.close();
      await a.close();
    }
    expect(boundTo(img.sif)).to.deep.equal([]);
  });

  it('root({ shareLoopDevice }): read-only roots of one image hold one device; without it, one each', async () => {
    const img = testImages();
    await using image = await init(img.sif, false, { signal: AbortSignal.timeout(10_000) });
    const held: MountedRoot[] = [];
    try {
      for (let i = 0; i < 3; i++) held.push(await root(image, registerMountPoint(mountDir(`share-root-${i}`)), { shareLoopDevice: true }));
      const shared = held.map((r) => r.mounts[0]!.loopDevice);
      expect(new Set(shared).size, `devices of the shared roots: ${shared.join(', ')}`).to.equal(1);
      expect(boundTo(img.sif)).to.have.length(1);
      // A plain root next to them gets its own.
      held.push(await root(image, registerMountPoint(mountDir('share-root-own'))));
      expect(held[3]!.mounts[0]!.loopDevice).to.not.equal(shared[0]);
      expect(boundTo(img.sif)).to.have.length(2);
      // The device stays while any root of it is held, and goes with the last one.
      await held[0]!.close();
      await held[1]!.close();
      expect(boundTo(img.sif)).to.have.length(2);
    } finally {
      for (const r of held) await r.close();
    }
    await eventually(() => boundTo(img.sif).length === 0, 3000, 'the devices to go');
  });

  it('a device this process shared before, released and bound to another file since, is not reused', async () => {
    const img = testImages();
    await using image = await init(img.sif);
    const dir = registerMountPoint(mountDir('share-rebound'));
    const first = await root(image, dir, { shareLoopDevice: true });
    const device = first.mounts[0]!.loopDevice!;
    await first.close();
    await eventually(() => boundTo(img.sif).length === 0, 3000, 'the autoclear device to go');
    // Someone else takes the lowest free device: most likely the very same one.
    await using other = await attachLoop(img.ext3, { readOnly: true });
    expect(other.path, 'the other file took the device the first root had').to.equal(device);
    const second = await root(image, dir, { shareLoopDevice: true });
    try {
      const now = second.mounts[0]!.loopDevice!;
      expect(boundLoops().find((l) => `/dev/${l.name}` === now)?.backingFile, `${now} (was ${device}; the other file is on ${other.path})`).to.equal(img.sif);
      expect(now).to.not.equal(other.path);
    } finally {
      await second.close();
    }
  });

  it('finds the same file through another path or fd (device + inode, not the name)', async () => {
    const img = testImages();
    const link = `${img.squashfs}.link`;
    fs.symlinkSync(img.squashfs, link);
    await using a = await attachLoop(img.squashfs, { shared: true });
    await using b = await attachLoop(link, { shared: true });
    expect(b.number).to.equal(a.number);
  });

  it('does not reuse when offset, size, read-only flag or file differ, or without shared', async () => {
    const img = testImages();
    const sq = img.sifParts.squashfs;
    const ex = img.sifParts.ext3;
    const copy = `${img.sif}.copy`;
    fs.copyFileSync(img.sif, copy);
    const devices: LoopDevice[] = [];
    try {
      const base = await attachLoop(copy, { offset: sq.offset, sizeLimit: sq.size, shared: true });
      devices.push(base);
      const cases = [
        { file: copy, options: { offset: ex.offset, sizeLimit: ex.size, shared: true } }, // other offset
        { file: copy, options: { offset: sq.offset, sizeLimit: sq.size + 4096, shared: true } }, // other size
        { file: copy, options: { offset: sq.offset, sizeLimit: sq.size, shared: true, readOnly: false } }, // other flag
        { file: img.sif, options: { offset: sq.offset, sizeLimit: sq.size, shared: true } }, // other file, same bytes
        { file: copy, options: { offset: sq.offset, sizeLimit: sq.size } }, // not shared
      ];
      for (const c of cases) {
        const d = await attachLoop(c.file, c.options);
        devices.push(d);
        expect(d.number, JSON.stringify(c.options)).to.not.equal(base.number);
        expect(d.owner).to.equal(true);
      }
      expect(new Set(devices.map((d) => d.number)).size).to.equal(devices.length);
    } finally {
      await Promise.all(devices.map((d) => d.close()));
    }
  });

  it('concurrent shared attaches of one partition in one process end up on one device', async () => {
    const img = testImages();
    const devices = await Promise.all(Array.from({ length: 8 }, () => attachLoop(img.squashfs, { shared: true })));
    try {
      expect(new Set(devices.map((d) => d.number)).size).to.equal(1);
      expect(devices.filter((d) => d.owner)).to.have.length(1);
    } finally {
      await Promise.all(devices.map((d) => d.close()));
    }
    expect(boundTo(img.squashfs)).to.deep.equal([]);
  });

  it('shares between processes: two processes attaching at once get one device', async () => {
    const img = testImages();
    const cmd = { op: 'attach', image: img.ext3, count: 4, options: { shared: true } };
    const one = startChild(cmd);
    const two = startChild(cmd);
    const [r1, r2] = await Promise.all([one.next(), two.next()]);
    try {
      expect(r1.errors).to.deep.equal([]);
      expect(r2.errors).to.deep.equal([]);
      const numbers = [...(r1.devices as Array<{ number: number }>), ...(r2.devices as Array<{ number: number }>)].map((d) => d.number);
      expect(numbers).to.have.length(8);
      expect(new Set(numbers).size).to.equal(1);
      expect(boundTo(img.ext3)).to.have.length(1);
    } finally {
      await Promise.all([one.finish(), two.finish()]);
    }
    expect(boundTo(img.ext3)).to.deep.equal([]);
  });
});

describe('kernel: concurrent attaches', function () {
  before(function () {
    requireKernel(this);
  });

  it('32 concurrent attaches from two processes all succeed on distinct, correct devices', async () => {
    const img = testImages();
    const part = img.sifParts.squashfs;
    const cmd = { op: 'attach', image: img.sif, count: 16, options: { offset: part.offset, sizeLimit: part.size } };
    const one = startChild(cmd);
    const two = startChild(cmd);
    try {
      const [r1, r2] = await Promise.all([one.next(), two.next()]);
      expect(r1.errors).to.deep.equal([]);
      expect(r2.errors).to.deep.equal([]);
      const devs = [...(r1.devices as Array<{ number: number }>), ...(r2.devices as Array<{ number: number }>)];
      expect(devs).to.have.length(32);
      expect(new Set(devs.map((d) => d.number)).size).to.equal(32);
      for (const d of devs) {
        const st = await loopStatus(d.number);
        expect(st.backingFile).to.equal(img.sif);
        expect(Number(st.offset)).to.equal(part.offset);
        expect(Number(st.sizeLimit)).to.equal(part.size);
      }
    } finally {
      expect(await one.finish()).to.equal(0);
      expect(await two.finish()).to.equal(0);
    }
    expect(boundTo(img.sif)).to.deep.equal([]);
  });

  it('32 concurrent attaches in this process while another process attaches too', async () => {
    const img = testImages();
    const other = startChild({ op: 'attach', image: img.ext3, count: 16 });
    const mine = await Promise.allSettled(Array.from({ length: 32 }, () => attachLoop(img.squashfs)));
    const theirs = await other.next();
    const ok = mine.filter((r): r is PromiseFulfilledResult<LoopDevice> => r.status === 'fulfilled').map((r) => r.value);
    try {
      expect(mine.filter((r) => r.status === 'rejected')).to.deep.equal([]);
      expect(theirs.errors).to.deep.equal([]);
      const all = [...ok.map((d) => d.number), ...(theirs.devices as Array<{ number: number }>).map((d) => d.number)];
      expect(new Set(all).size).to.equal(48);
    } finally {
      await Promise.all(ok.map((d) => d.close()));
      await other.finish();
    }
    expect(boundTo(img.squashfs)).to.deep.equal([]);
    expect(boundTo(img.ext3)).to.deep.equal([]);
  });

  it('works from worker_threads, each with its own addon instance', async () => {
    const img = testImages();
    const code = `
      const { parentPort, workerData } = require('node:worker_threads');
      const { attachLoop } = require(${JSON.stringify(distLib + '/loop')});
      (async () => {
        const devs = await Promise.all([0, 1, 2].map(() => attachLoop(workerData)));
        const numbers = devs.map((d) => d.number);
        await Promise.all(devs.map((d) => d.close()));
        let errorShape = null;
        try { await attachLoop('/nonexistent'); } catch (e) { errorShape = e.code; }
        parentPort.postMessage({ numbers, errorShape });
      })().catch((e) => parentPort.postMessage({ error: String(e && e.stack) }));`;
    const run = (): Promise<{ numbers: number[]; errorShape: string; error?: string }> =>
      new Promise((resolve, reject) => {
        const w = new Worker(code, { eval: true, workerData: img.squashfs });
        w.once('message', resolve);
        w.once('error', reject);
      });
    const [a, b, main] = await Promise.all([run(), run(), attachLoop(img.squashfs)]);
    try {
      // Each worker held three devices at once: three distinct ones, and its own errors' shape.
      for (const w of [a, b]) {
        expect(w.error, w.error).to.equal(undefined);
        expect(new Set(w.numbers).size, JSON.stringify(w.numbers)).to.equal(3);
        expect(w.errorShape).to.equal('ENOENT');
      }
    } finally {
      await main.close();
    }
    expect(boundTo(img.squashfs)).to.deep.equal([]);
  });
});
