// Loop devices on the real kernel: attach with offset and size limit, status, read-only,
// the legacy ioctls, retries, verification and undo, abort, and error shape.
import { expect } from 'chai';
import * as fs from 'node:fs';
import { getSystemErrorName } from 'node:util';
import { AbortError, ImgmountError, SystemError } from '../../../lib/errors';
import {
  attachLoop,
  detachLoop,
  listLoopDevices,
  loopCounters,
  loopStatus,
  LO_FLAGS_AUTOCLEAR,
  LO_FLAGS_READ_ONLY,
  type LoopDevice,
} from '../../../lib/loop';
import { testHooks } from '../../../lib/loop/internal';
import { native } from '../../../lib/native/binding';
import { testImages } from '../../support/images';
import { requireKernel } from '../../support/kernel';
import { boundLoops } from '../../support/leaks';

function boundTo(file: string): string[] {
  return boundLoops().filter((l) => l.backingFile === file).map((l) => l.name);
}

describe('kernel: loop devices', function () {
  before(function () {
    requireKernel(this);
  });
  afterEach(() => {
    delete testHooks.pickDevice;
    delete testHooks.injectErrno;
    delete process.env.IMGMOUNT_LOOP_API;
  });

  it('attaches a SIF partition with offset and size limit and shows it in sysfs and status', async () => {
    const img = testImages();
    const part = img.sifParts.ext3;
    await using dev = await attachLoop(img.sif, { offset: part.offset, sizeLimit: part.size });
    expect(dev.path).to.equal(`/dev/loop${dev.number}`);
    expect(dev.readOnly).to.equal(true);
    expect(dev.autoclear).to.equal(true);
    expect(Number(dev.offset)).to.equal(part.offset);
    expect(Number(dev.sizeLimit)).to.equal(part.size);
    expect(dev.method).to.equal('configure');

    const st = await loopStatus(dev.number);
    expect(st.bound).to.equal(true);
    expect(st.backingFile).to.equal(img.sif);
    expect(Number(st.offset)).to.equal(part.offset);
    expect(Number(st.sizeLimit)).to.equal(part.size);
    expect(Number(st.size)).to.equal(part.size);
    expect(st.readOnly).to.equal(true);
    expect(st.autoclear).to.equal(true);
    expect((await listLoopDevices()).map((s) => s.number)).to.include(dev.number);

    // The device shows exactly the partition's bytes.
    const fd = fs.openSync(dev.path, 'r');
    try {
      const head = Buffer.alloc(4096);
      fs.readSync(fd, head, 0, 4096, 0);
      const want = fs.readFileSync(img.ext3).subarray(0, 4096);
      expect(head.equals(want)).to.equal(true);
    } finally {
      fs.closeSync(fd);
    }
    // lo_file_name carries the image path for `losetup -a`.
    const raw = await native((b) => b.loopGetStatus(dev.path));
    expect(raw.fileName).to.equal(img.sif.slice(-63));
    expect(raw.flags & (LO_FLAGS_READ_ONLY | LO_FLAGS_AUTOCLEAR)).to.equal(LO_FLAGS_READ_ONLY | LO_FLAGS_AUTOCLEAR);
  });

  it('close() detaches, is idempotent, and the handle refuses use afterwards', async () => {
    const img = testImages();
    const dev = await attachLoop(img.squashfs);
    expect(boundTo(img.squashfs)).to.include(`loop${dev.number}`);
    const p1 = dev.close();
    const p2 = dev.close();
    expect(p1).to.equal(p2);
    await p1;
    await dev[Symbol.asyncDispose]();
    expect(dev.closed).to.equal(true);
    expect(boundTo(img.squashfs)).to.not.include(`loop${dev.number}`);
    expect(() => dev.fd).to.throw(ImgmountError).with.property('code', 'ERR_LOOP_CLOSED');
  });

  it('accepts an fd or an { fd, path } object and leaves that fd open', async () => {
    const img = testImages();
    const fd = fs.openSync(img.squashfs, 'r');
    try {
      const a = await attachLoop(fd);
      const b = await attachLoop({ fd, path: img.squashfs });
      expect(a.number).to.not.equal(b.number);
      expect(b.backingFile).to.equal(img.squashfs);
      await a.close();
      await b.close();
      expect(fs.fstatSync(fd).size).to.equal(fs.statSync(img.squashfs).size); // still open
    } finally {
      fs.closeSync(fd);
    }
  });

  it('enforces read-only: writes to the device fail; readOnly:false gives a writable device', async () => {
    const img = testImages();
    const copy = `${img.ext3}.rw`;
    fs.copyFileSync(img.ext3, copy);
    {
      await using ro = await attachLoop(copy);
      expect((await loopStatus(ro.number)).readOnly).to.equal(true);
      let err: NodeJS.ErrnoException | undefined;
      let fd = -1;
      try {
        fd = fs.openSync(ro.path, 'r+'); // root may open it; the write itself must fail
        fs.writeSync(fd, Buffer.from('x'), 0, 1, 0);
      } catch (e) {
        err = e as NodeJS.ErrnoException;
      } finally {
        if (fd >= 0) fs.closeSync(fd);
      }
      // The block layer refuses writes to a read-only device with EPERM (blkdev_write_iter).
      expect(err?.code).to.equal('EPERM');
    }
    await using rw = await attachLoop(copy, { readOnly: false });
    expect(rw.readOnly).to.equal(false);
    expect((await loopStatus(rw.number)).readOnly).to.equal(false);
    const fd = fs.openSync(rw.path, 'r+');
    fs.writeSync(fd, Buffer.from('x'), 0, 1, 1 << 20);
    fs.closeSync(fd);
  });

  it('verifies what the kernel bound: a writable device from a read-only fd is ERR_LOOP_VERIFY and released', async () => {
    const img = testImages();
    const fd = fs.openSync(img.squashfs, 'r');
    try {
      const before = boundTo(img.squashfs).length;
      const err = await attachLoop({ fd, path: img.squashfs }, { readOnly: false }).catch((e: unknown) => e);
      expect(err).to.be.instanceOf(ImgmountError);
      expect((err as ImgmountError).code).to.equal('ERR_LOOP_VERIFY');
      expect((err as ImgmountError).message).to.match(/read-only although read-write/);
      expect(boundTo(img.squashfs).length).to.equal(before);
    } finally {
      fs.closeSync(fd);
    }
  });

  it('autoclear:false keeps the device bound after close({ detach: false }); detachLoop() removes it', async () => {
    const img = testImages();
    const dev = await attachLoop(img.squashfs, { autoclear: false });
    await dev.close({ detach: false });
    const st = await loopStatus(dev.number);
    expect(st.bound).to.equal(true);
    expect(st.autoclear).to.equal(false);
    await detachLoop(dev.path);
    expect((await loopStatus(dev.number)).bound).to.equal(false);
    const err = await detachLoop(dev.number).catch((e: unknown) => e);
    expect(err).to.be.instanceOf(SystemError);
    expect((err as SystemError).code).to.equal('ENXIO');
  });

  it('uses LOOP_SET_FD + LOOP_SET_STATUS64 when IMGMOUNT_LOOP_API=legacy', async () => {
    const img = testImages();
    process.env.IMGMOUNT_LOOP_API = 'legacy';
    const part = img.sifParts.squashfs;
    const before = loopCounters().legacyAttaches;
    await using dev = await attachLoop(img.sif, { offset: part.offset, sizeLimit: part.size });
    expect(dev.method).to.equal('legacy');
    expect(loopCounters().legacyAttaches).to.equal(before + 1);
    const st = await loopStatus(dev.number);
    expect(Number(st.offset)).to.equal(part.offset);
    expect(Number(st.sizeLimit)).to.equal(part.size);
    expect(st.readOnly).to.equal(true);
    expect(st.autoclear).to.equal(true);
  });

  it('rejects an unknown IMGMOUNT_LOOP_API value instead of guessing', async () => {
    process.env.IMGMOUNT_LOOP_API = 'fast';
    const err = await attachLoop(testImages().squashfs).catch((e: unknown) => e);
    expect((err as ImgmountError).code).to.equal('ERR_INVALID_ARG_VALUE');
  });

  it('retries on EBUSY when another attacher took the device first (a really busy device)', async () => {
    const img = testImages();
    await using busy = await attachLoop(img.squashfs);
    // The first two attempts are steered onto the bound device: the kernel answers EBUSY.
    testHooks.pickDevice = (attempt) => (attempt < 2 ? busy.number : undefined);
    const before = loopCounters().busyRetries;
    await using dev = await attachLoop(img.ext3);
    expect(dev.number).to.not.equal(busy.number);
    expect(loopCounters().busyRetries - before).to.equal(2);
    // The busy device is untouched.
    expect((await loopStatus(busy.number)).backingFile).to.equal(img.squashfs);
  });

  it('gives up after busyRetries with ERR_LOOP_NO_FREE_DEVICE carrying the EBUSY', async () => {
    const img = testImages();
    await using busy = await attachLoop(img.squashfs);
    testHooks.pickDevice = () => busy.number;
    const err = await attachLoop(img.ext3, { busyRetries: 3 }).catch((e: unknown) => e);
    expect((err as ImgmountError).code).to.equal('ERR_LOOP_NO_FREE_DEVICE');
    expect(((err as ImgmountError).cause as SystemError).code).to.equal('EBUSY');
    expect(boundTo(img.ext3)).to.deep.equal([]);
  });

  it('backs off and retries LOOP_SET_STATUS64 on EAGAIN, and releases the device when it never succeeds', async () => {
    const img = testImages();
    process.env.IMGMOUNT_LOOP_API = 'legacy';
    // EAGAIN is simulated: current kernels no longer return it from LOOP_SET_STATUS64.
    testHooks.injectErrno = (step, n) => (step === 'setStatus' && n % 1000 < 3 ? 11 : undefined);
    const before = loopCounters().eagainRetries;
    await using dev = await attachLoop(img.squashfs);
    expect(loopCounters().eagainRetries - before).to.equal(3);
    expect(dev.method).to.equal('legacy');

    testHooks.injectErrno = (step) => (step === 'setStatus' ? 11 : undefined);
    const err = await attachLoop(img.ext3, { eagainRetries: 4 }).catch((e: unknown) => e);
    expect((err as SystemError).code).to.equal('EAGAIN');
    expect((err as SystemError).syscall).to.equal('ioctl(LOOP_SET_STATUS64)');
    expect(boundTo(img.ext3)).to.deep.equal([]);
  });

  it('a back-off wait honours the signal and leaves nothing bound', async () => {
    const img = testImages();
    process.env.IMGMOUNT_LOOP_API = 'legacy';
    const ac = new AbortController();
    const calls: number[] = [];
    testHooks.injectErrno = (step, n) => {
      if (step !== 'setStatus') return undefined;
      calls.push(n);
      // The third EAGAIN: abort once the attach is waiting to retry (a microtask runs after the
      // synchronous catch that starts the back-off), not after some number of milliseconds.
      if (calls.length === 3) queueMicrotask(() => ac.abort(new Error('stop')));
      return 11;
    };
    const err = await attachLoop(img.ext3, { eagainRetries: 100, signal: ac.signal }).catch((e: unknown) => e);
    expect(err).to.be.instanceOf(AbortError);
    expect((err as AbortError).cause).to.have.property('message', 'stop');
    // Three attempts and no fourth: the wait after the third was cut short by the signal.
    expect(calls).to.deep.equal([0, 1, 2]);
    expect(boundTo(img.ext3)).to.deep.equal([]);
  });

  it('an abort that arrives while the kernel is attaching undoes the attach (nothing leaks)', async () => {
    const img = testImages();
    const before = boundTo(img.squashfs).length;
    const attached = loopCounters().attached;
    const ac = new AbortController();
    // Fires after the last signal check, just as the attach goes to the kernel.
    testHooks.pickDevice = () => {
      ac.abort(new Error('changed my mind'));
      return undefined;
    };
    const err = await attachLoop(img.squashfs, { signal: ac.signal }).catch((e: unknown) => e);
    expect(err).to.be.instanceOf(AbortError);
    expect((err as AbortError).cause).to.be.instanceOf(Error);
    expect(loopCounters().attached).to.equal(attached + 1); // the kernel did bind it...
    expect(boundTo(img.squashfs).length).to.equal(before); // ...and it was detached again
    // Already aborted: nothing is even tried.
    const err2 = await attachLoop(img.squashfs, { signal: ac.signal }).catch((e: unknown) => e);
    expect(err2).to.be.instanceOf(AbortError);
    expect(loopCounters().attached).to.equal(attached + 1);
  });

  it('refuses devices at or above maxDevices with ERR_LOOP_NO_FREE_DEVICE', async () => {
    const img = testImages();
    await using first = await attachLoop(img.squashfs);
    const err = await attachLoop(img.ext3, { maxDevices: first.number + 1 }).catch((e: unknown) => e);
    // The lowest free device is above `first`, so it is refused (and not left bound).
    expect((err as ImgmountError).code).to.equal('ERR_LOOP_NO_FREE_DEVICE');
    // It says how to get out of it: raise the limit, or share devices.
    expect((err as Error).message).to.include(`below the maximum of ${first.number + 1}`);
    expect((err as Error).message).to.match(/maxDevices.*max_loop=N.*shareLoopDevice: true/s);
    expect(boundTo(img.ext3)).to.deep.equal([]);
  });

  it('reports native failures as SystemErrors with errno, syscall, path and the caller in the stack', async () => {
    const err = await (async function callerOfAttach(): Promise<LoopDevice> {
      return attachLoop('/nonexistent/image.sif');
    })().catch((e: unknown) => e);
    expect((err as NodeJS.ErrnoException).code).to.equal('ENOENT');

    const dir = await (async function attachADirectory(): Promise<unknown> {
      const fd = fs.openSync('/', 'r');
      try {
        return await attachLoop(fd).catch((e: unknown) => e);
      } finally {
        fs.closeSync(fd);
      }
    })();
    expect(dir).to.be.instanceOf(SystemError);
    const se = dir as SystemError;
    // This kernel has LOOP_CONFIGURE (5.8+), which refuses a backing file that is neither a
    // regular file nor a block device with EINVAL.
    expect(se.code).to.equal('EINVAL');
    expect(se.errno).to.equal(-22);
    expect(getSystemErrorName(se.errno)).to.equal(se.code);
    expect(se.syscall).to.equal('ioctl(LOOP_CONFIGURE)');
    expect(se.path).to.match(/^\/dev\/loop\d+$/);
    expect(se.stack).to.include('attachADirectory');
  });

  it('validates arguments before touching the kernel', async () => {
    const img = testImages();
    for (const [opts, code] of [
      [{ offset: -1 }, 'ERR_OUT_OF_RANGE'],
      [{ sizeLimit: 1.5 }, 'ERR_OUT_OF_RANGE'],
      [{ blockSize: 1000 }, 'ERR_OUT_OF_RANGE'],
      [{ readOnly: 'yes' }, 'ERR_INVALID_ARG_TYPE'],
      [{ api: 'new' }, 'ERR_INVALID_ARG_VALUE'],
    ] as const) {
      const err = await attachLoop(img.squashfs, opts as never).catch((e: unknown) => e);
      expect((err as { code?: string }).code, JSON.stringify(opts)).to.equal(code);
    }
    const err = await attachLoop({} as never).catch((e: unknown) => e);
    expect((err as { code?: string }).code).to.equal('ERR_INVALID_ARG_TYPE');
  });
});
