// EAGAIN at every loop step that retries on it: the binding ioctl (LOOP_CONFIGURE, or
// LOOP_SET_FD of the legacy pair), LOOP_SET_STATUS64, and LOOP_CONFIGURE inside the fused
// attach + mount of mountPartition(). Current kernels no longer answer EAGAIN there, so it is
// injected (testHooks.injectErrno): for the binding ioctl by the addon itself, after the real
// LOOP_CTL_GET_FREE and open of /dev/loopN, in place of the ioctl. Each step must retry (counted
// by loopCounters() and by the hook's own calls), then succeed; or give up after eagainRetries
// retries with an EAGAIN that names the step, the device and the count. Either way nothing is
// left bound or mounted and no fd is left open.
import { expect } from 'chai';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { SystemError } from '../../../lib/errors';
import { attachLoop, loopCounters, loopStatus, LO_FLAGS_AUTOCLEAR, LO_FLAGS_READ_ONLY } from '../../../lib/loop';
import { testHooks, type InjectStep } from '../../../lib/loop/internal';
import { findMounts, mountPartition, readMountInfo } from '../../../lib/mount';
import { openFds } from '../../support/fds';
import { testImages, mountDir } from '../../support/images';
import { eventually, requireKernel } from '../../support/kernel';
import { boundLoops, registerMountPoint } from '../../support/leaks';
import { rejection as rejectionOf } from '../../support/expect-error';

const EAGAIN = 11;

function boundTo(file: string): string[] {
  return boundLoops().filter((l) => l.backingFile === file).map((l) => l.name);
}

/** Injects EAGAIN at `step` for the first `times` calls (Infinity: always); records every call. */
function injectAt(step: InjectStep, times: number): Array<number> {
  const calls: number[] = [];
  let injected = 0;
  testHooks.injectErrno = (s, call) => {
    if (s !== step) return undefined;
    calls.push(call);
    return injected++ < times ? EAGAIN : undefined;
  };
  return calls;
}

const rejection = (p: Promise<unknown>): Promise<SystemError> => rejectionOf(p, SystemError);

describe('kernel: EAGAIN at every loop step that retries on it', function () {
  before(function () {
    requireKernel(this);
  });
  afterEach(() => {
    delete testHooks.injectErrno;
    delete process.env.IMGMOUNT_LOOP_API;
  });

  const bindSteps: Array<{ step: InjectStep; api: 'configure' | 'legacy'; syscall: string }> = [
    { step: 'configure', api: 'configure', syscall: 'ioctl(LOOP_CONFIGURE)' },
    { step: 'setFd', api: 'legacy', syscall: 'ioctl(LOOP_SET_FD)' },
  ];

  for (const { step, api, syscall } of bindSteps) {
    it(`${syscall}: retried with back-off, then the attach succeeds and is verified`, async () => {
      const img = testImages();
      const fds = openFds();
      const calls = injectAt(step, 3);
      const before = loopCounters().eagainRetries;
      const dev = await attachLoop(img.squashfs, { api });
      try {
        expect(calls).to.deep.equal([0, 1, 2, 3]); // three refused attempts, the fourth binds
        expect(loopCounters().eagainRetries - before).to.equal(3);
        expect(dev.method).to.equal(api);
        const st = await loopStatus(dev.number);
        expect(st.backingFile).to.equal(img.squashfs);
        expect(dev.status.flags & (LO_FLAGS_READ_ONLY | LO_FLAGS_AUTOCLEAR)).to.equal(LO_FLAGS_READ_ONLY | LO_FLAGS_AUTOCLEAR);
        expect(boundTo(img.squashfs)).to.deep.equal([`loop${dev.number}`]);
      } finally {
        await dev.close();
      }
      expect(boundTo(img.squashfs)).to.deep.equal([]);
      expect(openFds()).to.deep.equal(fds); // the refused attempts' /dev/loopN fds were closed
    });

    it(`${syscall}: gives up after eagainRetries retries with an EAGAIN naming the step, device and count`, async () => {
      const img = testImages();
      const fds = openFds();
      const calls = injectAt(step, Infinity);
      const before = loopCounters().eagainRetries;
      const attached = loopCounters().attached;
      const err = await rejection(attachLoop(img.ext3, { api, eagainRetries: 2 }));
      expect(err.code).to.equal('EAGAIN');
      expect(err.syscall).to.equal(syscall);
      expect(err.path).to.match(/^\/dev\/loop\d+$/); // the real device GET_FREE gave
      expect(err.message).to.equal(`loop attach gave up after 2 retries (eagainRetries): EAGAIN: resource temporarily unavailable, ${syscall} '${err.path}'`);
      expect((err.cause as SystemError).code).to.equal('EAGAIN');
      expect(calls).to.deep.equal([0, 1, 2]);
      expect(loopCounters().eagainRetries - before).to.equal(2);
      expect(loopCounters().attached).to.equal(attached);
      expect(boundTo(img.ext3)).to.deep.equal([]);
      expect(openFds()).to.deep.equal(fds);
    });
  }

  it('ioctl(LOOP_SET_STATUS64): retried on the bound device, then the attach succeeds', async () => {
    const img = testImages();
    const fds = openFds();
    const calls = injectAt('setStatus', 2);
    const before = loopCounters().eagainRetries;
    const dev = await attachLoop(img.squashfs, { api: 'legacy' });
    try {
      expect(calls).to.deep.equal([0, 1, 2]); // attempt 0, calls 0..2
      expect(loopCounters().eagainRetries - before).to.equal(2);
      expect(dev.method).to.equal('legacy');
      // The status the retried call set is what the device has.
      expect(dev.status.flags & (LO_FLAGS_READ_ONLY | LO_FLAGS_AUTOCLEAR)).to.equal(LO_FLAGS_READ_ONLY | LO_FLAGS_AUTOCLEAR);
      expect((await loopStatus(dev.number)).autoclear).to.equal(true);
    } finally {
      await dev.close();
    }
    expect(boundTo(img.squashfs)).to.deep.equal([]);
    expect(openFds()).to.deep.equal(fds);
  });

  it('ioctl(LOOP_SET_STATUS64): gives up after eagainRetries retries and unbinds the device it had bound', async () => {
    const img = testImages();
    const fds = openFds();
    const calls = injectAt('setStatus', Infinity);
    const before = loopCounters().eagainRetries;
    const err = await rejection(attachLoop(img.ext3, { api: 'legacy', eagainRetries: 2 }));
    expect(err.code).to.equal('EAGAIN');
    expect(err.syscall).to.equal('ioctl(LOOP_SET_STATUS64)');
    expect(err.message).to.match(/^loop attach gave up after 2 retries \(eagainRetries\): EAGAIN: .*ioctl\(LOOP_SET_STATUS64\) '\/dev\/loop\d+'$/);
    expect(calls).to.deep.equal([0, 1, 2]); // the first call and two retries, as for the binding ioctl
    expect(loopCounters().eagainRetries - before).to.equal(2);
    expect(boundTo(img.ext3)).to.deep.equal([]);
    expect(openFds()).to.deep.equal(fds);
  });

  it('the fused attach + mount (LOOP_CONFIGURE in the same hop as the mount): retried, then mounted', async () => {
    const img = testImages();
    const dir = registerMountPoint(mountDir('eagain-fused'));
    const fds = openFds();
    const calls = injectAt('configure', 2);
    const before = loopCounters().eagainRetries;
    const m = await mountPartition(img.squashfs, dir, { fstype: 'squashfs', loop: { api: 'configure' } });
    try {
      expect(calls).to.deep.equal([0, 1, 2]);
      expect(loopCounters().eagainRetries - before).to.equal(2);
      expect(fs.readFileSync(path.join(dir, 'etc/hello.txt'), 'utf8')).to.equal(img.files['etc/hello.txt']);
      const there = findMounts(await readMountInfo(), { mountPoint: dir });
      expect(there.map((e) => e.fstype)).to.deep.equal(['squashfs']);
      expect(boundTo(img.squashfs)).to.deep.equal([m.loopDevice!.replace('/dev/', '')]);
    } finally {
      await m.unmount();
    }
    expect(findMounts(await readMountInfo(), { mountPoint: dir })).to.deep.equal([]);
    await eventually(() => boundTo(img.squashfs).length === 0, 3000, 'the loop device to autoclear');
    expect(openFds()).to.deep.equal(fds);
  });

  it('the fused attach + mount gives up after eagainRetries retries: nothing mounted, nothing bound', async () => {
    const img = testImages();
    const dir = registerMountPoint(mountDir('eagain-fused-fail'));
    const fds = openFds();
    const calls = injectAt('configure', Infinity);
    const err = await rejection(mountPartition(img.ext3, dir, { fstype: 'ext3', loop: { api: 'configure', eagainRetries: 1 } }));
    expect(err.code).to.equal('EAGAIN');
    expect(err.syscall).to.equal('ioctl(LOOP_CONFIGURE)');
    expect(err.message).to.match(/^loop attach gave up after 1 retry \(eagainRetries\)/);
    expect(calls).to.deep.equal([0, 1]);
    expect(findMounts(await readMountInfo(), { mountPoint: dir })).to.deep.equal([]);
    expect(boundTo(img.ext3)).to.deep.equal([]);
    expect(openFds()).to.deep.equal(fds);
  });
});
