// `imgmount loop attach|detach|list`, run as an operator would (the bin in a child process).
import { expect } from 'chai';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { loopStatus } from '../../../lib/loop';
import { fixture } from '../../support/fixtures';
import { busyboxSif } from '../../support/images';
import { requireKernel } from '../../support/kernel';
import { boundLoops } from '../../support/leaks';
import { repoRoot } from '../../support/paths';

const bin = path.join(repoRoot, 'bin', 'imgmount.js');

function imgmount(...args: string[]) {
  const r = spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8' });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe('kernel: imgmount loop attach|detach|list', function () {
  const attached: string[] = [];
  before(function () {
    requireKernel(this);
  });
  afterEach(() => {
    // A failed assertion must not leave a (non-autoclear) device behind.
    for (const d of attached.splice(0)) spawnSync(process.execPath, [bin, 'loop', 'detach', d]);
  });

  it('attach binds the root partition of a SIF (offset, size, read-only) and prints the device', async () => {
    const r = imgmount('loop', 'attach', busyboxSif.path);
    expect(r.status, r.stderr).to.equal(0);
    const dev = r.stdout.trim();
    attached.push(dev);
    expect(dev).to.match(/^\/dev\/loop\d+$/);
    const st = await loopStatus(dev);
    expect(st.backingFile).to.equal(busyboxSif.path);
    expect(Number(st.offset)).to.equal(busyboxSif.offset);
    expect(Number(st.sizeLimit)).to.equal(busyboxSif.size);
    expect(st.readOnly).to.equal(true);
    expect(st.autoclear).to.equal(false); // it must outlive the command

    const list = imgmount('loop', 'list');
    expect(list.stdout).to.match(new RegExp(`^${dev}\\s+${busyboxSif.offset}\\s+${busyboxSif.size}\\s+1\\s+0\\s+${busyboxSif.path}$`, 'm'));
    const json = JSON.parse(imgmount('loop', 'list', '--json').stdout) as Array<{ path: string; backingFile: string }>;
    expect(json.find((d) => d.path === dev)?.backingFile).to.equal(busyboxSif.path);

    expect(imgmount('loop', 'detach', dev).status).to.equal(0);
    attached.pop();
    expect((await loopStatus(dev)).bound).to.equal(false);
    // (Detaching it again would race with other processes taking the free device: a device
    // that does not exist is the safe way to see the error.)
    const missing = imgmount('loop', 'detach', '/dev/loop1048575');
    expect(missing.status).to.equal(1);
    expect(missing.stderr).to.match(/^imgmount: ENOENT: .*\/dev\/loop1048575/);
  });

  it('attach by partition name, by id, and by raw offset', async () => {
    const sif = fixture('sif-kernel.sif');
    const byName = imgmount('loop', 'attach', '--partition', 'data', sif);
    expect(byName.status, byName.stderr).to.equal(0);
    attached.push(byName.stdout.trim());
    const byId = imgmount('loop', 'attach', '--id', '2', '--json', sif);
    const info = JSON.parse(byId.stdout) as { path: string; offset: number; sizeLimit: number };
    attached.push(info.path);
    const a = await loopStatus(byName.stdout.trim());
    expect(Number(a.sizeLimit)).to.equal(fs.statSync(fixture('ext3.img')).size);
    expect(Number(info.offset)).to.equal(Number(a.offset));
    const raw = imgmount('loop', 'attach', '--offset', '31', fixture('hdr-lf.sqfs'));
    attached.push(raw.stdout.trim());
    expect(Number((await loopStatus(raw.stdout.trim())).offset)).to.equal(31);
  });

  it('refuses unknown partitions and bad arguments with clear messages and no device', () => {
    // Devices bound to these images only: other processes on the machine attach and detach too.
    const ours = () => boundLoops().filter((l) => [fixture('sif-kernel.sif'), fixture('sq-gzip.sqfs')].includes(l.backingFile)).map((l) => l.name);
    const before = ours();
    const r = imgmount('loop', 'attach', '--partition', 'nope', fixture('sif-kernel.sif'));
    expect(r.status).to.equal(1);
    expect(r.stderr).to.match(/has no partition named "nope"/);
    expect(imgmount('loop', 'attach', '--offset', 'x', fixture('sq-gzip.sqfs')).status).to.equal(2);
    expect(imgmount('loop', 'attach', '--offset', '0', '--id', '1', fixture('sq-gzip.sqfs')).status).to.equal(2);
    expect(imgmount('loop', 'frob').stderr).to.match(/unknown loop subcommand "frob"/);
    expect(ours()).to.deep.equal(before);
  });
});
