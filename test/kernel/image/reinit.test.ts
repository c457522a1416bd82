// reInit (Apptainer's name for fromJSON) as it is used: a stage hands the next one, a separate
// process, the image's JSON and its open fd; the next stage restores the image from them,
// reads through the fd and mounts from it, although the file was renamed and the first stage
// closed its own copy. JSON that does not fit the fd it inherited is refused there.
import { expect } from 'chai';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { init } from '../../../lib';
import { fixture } from '../../support/fixtures';
import { testTmp } from '../../support/hooks';
import { FILES, mountDir } from '../../support/images';
import { eventually, requireKernel } from '../../support/kernel';
import { kernelMountsAt } from '../../support/kernel-mountinfo';
import { boundLoops, registerMountPoint } from '../../support/leaks';
import { repoRoot } from '../../support/paths';

const childScript = path.join(repoRoot, 'dist', 'test', 'support', 'reinit-child.js');

/** Starts the next stage with `fd` as its fd 3; resolves with its one JSON line. */
function nextStage(fd: number, command: Record<string, unknown>): { started: Promise<void>; result: Promise<Record<string, unknown>> } {
  const child = spawn(process.execPath, [childScript, JSON.stringify(command)], { stdio: ['ignore', 'pipe', 'inherit', fd] });
  let out = '';
  child.stdout!.setEncoding('utf8').on('data', (d: string) => (out += d));
  return {
    started: new Promise((resolve, reject) => {
      child.once('spawn', () => resolve());
      child.once('error', reject);
    }),
    result: new Promise((resolve, reject) => {
      child.once('close', () => {
        try {
          resolve(JSON.parse(out) as Record<string, unknown>);
        } catch {
          reject(new Error(`next stage printed ${JSON.stringify(out)}`));
        }
      });
    }),
  };
}

/** SIF descriptor slot `i` of a file our writer made: offset at 4096 + 585 i + 17, size at + 25. */
function sifSlot(sif: string, slot: number): { offset: number; size: number } {
  const b = fs.readFileSync(sif);
  const d = 4096 + 585 * slot;
  return { offset: Number(b.readBigInt64LE(d + 17)), size: Number(b.readBigInt64LE(d + 25)) };
}

describe('kernel: reInit in the next stage, from the JSON and an inherited fd', function () {
  before(function () {
    requireKernel(this);
  });

  it('restores the image there (renamed since, first stage closed), reads its bytes and mounts its root from the fd', async () => {
    const first = path.join(testTmp, 'reinit-stage1.sif');
    fs.copyFileSync(fixture('sif-basic.sif'), first);
    const img = await init(first);
    const j = img.toJSON();
    // The next stage finds the fd at 3, not at the number it had here.
    const json = JSON.stringify({ ...j, fd: 3 });
    const renamed = path.join(testTmp, 'reinit-stage2.sif');
    fs.renameSync(first, renamed);
    const dir = registerMountPoint(mountDir('reinit'));
    const stage = nextStage(img.fd, { json, target: dir });
    await stage.started;
    await img.close(); // the first stage lets go of its copy
    const r = await stage.result;
    expect(r.error, JSON.stringify(r.error)).to.equal(undefined);
    const rootSlot = sifSlot(renamed, 3); // after the definition file and two JSON objects
    const bytes = fs.readFileSync(renamed).subarray(rootSlot.offset, rootSlot.offset + rootSlot.size);
    expect(r).to.deep.include({ path: renamed, type: j.type, fd: 3, sha256: createHash('sha256').update(bytes).digest('hex') });
    expect(r.partitions).to.deep.equal([{ name: '!__rootfs__!', ...rootSlot }]);
    expect(r.backingFile).to.equal(renamed); // the loop device is bound to the inherited fd's file
    expect(r.hello).to.equal(FILES['etc/hello.txt']);
    expect(kernelMountsAt(dir)).to.deep.equal([]);
    await eventually(() => !boundLoops().some((l) => l.backingFile === renamed), 3000, 'the loop device to go');
  });

  it('JSON that does not fit the inherited fd is refused there (a partition beyond its end)', async () => {
    const sif = path.join(testTmp, 'reinit-big.sif');
    fs.copyFileSync(fixture('sif-basic.sif'), sif);
    await using img = await init(sif);
    const small = fs.openSync(fixture('sq-gzip.sqfs'), 'r');
    try {
      const r = await nextStage(small, { json: JSON.stringify({ ...img.toJSON(), fd: 3 }) }).result;
      expect(r.error).to.deep.include({ code: 'ERR_PARTITION_OUT_OF_BOUNDS' });
      const size = fs.statSync(fixture('sq-gzip.sqfs')).size;
      expect((r.error as { message: string }).message).to.match(new RegExp(`^"!__rootfs__!" \\(id \\d+\\) spans \\d+\\.\\.\\d+ but \\S*sq-gzip\\.sqfs has only ${size} bytes$`));
    } finally {
      fs.closeSync(small);
    }
  });
});
