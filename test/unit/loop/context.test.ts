// The pure parts of the loop context (lib/loop/context.ts, lib/loop/expectation.ts): option
// resolution, lo_flags and lo_file_name, the native spec of an attempt, the fallback rule after
// a failed attempt, and the check of what the kernel bound. No loop device, no privilege.
import { expect } from 'chai';
import { constants } from 'node:os';
import { ImgmountError, SystemError } from '../../../lib/errors';
import {
  afterFailure,
  attachSpec,
  boundProblem,
  checkSource,
  loFileName,
  loFlags,
  loopContext,
  resolveLoopOptions,
  UDEV_RETRIES,
  UDEV_STEP_MS,
  type Attempt,
  type BoundDevice,
  type Tries,
} from '../../../lib/loop/context';
import { LO_FLAGS_AUTOCLEAR, LO_FLAGS_DIRECT_IO, LO_FLAGS_PARTSCAN, LO_FLAGS_READ_ONLY, LOOP_API_ENV } from '../../../lib/loop/constants';
import { expectationOf, statusMismatches } from '../../../lib/loop/expectation';
import type { NativeLoopInfo } from '../../../lib/native/binding';

const { EBUSY, EAGAIN, EINVAL, ENOTTY, ENOSYS, ENOENT, ENXIO, EPERM } = constants.errno;

const sysErr = (errno: number, syscall: string, path?: string): SystemError =>
  new SystemError({ errno, syscall, ...(path !== undefined ? { path } : {}) });

describe('unit: loop options', () => {
  let savedEnv: string | undefined;
  beforeEach(() => {
    savedEnv = process.env[LOOP_API_ENV];
    delete process.env[LOOP_API_ENV];
  });
  afterEach(() => {
    if (savedEnv === undefined) delete process.env[LOOP_API_ENV];
    else process.env[LOOP_API_ENV] = savedEnv;
  });

  it('defaults: read-only, autoclear, the whole file, 256 devices, api auto', () => {
    expect(resolveLoopOptions()).to.deep.equal({
      offset: 0n,
      sizeLimit: 0n,
      readOnly: true,
      autoclear: true,
      directIo: false,
      partscan: false,
      blockSize: 0,
      shared: false,
      maxDevices: 256,
      fileName: undefined,
      api: 'auto',
      busyRetries: 64,
      eagainRetries: 8,
      sharedLockTimeoutMs: 30_000,
      signal: undefined,
    });
  });

  it('keeps what was given: offsets as bigint, flags, limits, the signal', () => {
    const signal = new AbortController().signal;
    const o = resolveLoopOptions({
      offset: 4096,
      sizeLimit: 2n ** 60n,
      readOnly: false,
      autoclear: false,
      directIo: true,
      partscan: true,
      blockSize: 4096,
      shared: true,
      maxDevices: 8,
      fileName: 'name',
      api: 'legacy',
      busyRetries: 0,
      eagainRetries: 1,
      sharedLockTimeoutMs: 5,
      signal,
    });
    expect(o).to.deep.include({ offset: 4096n, sizeLimit: 2n ** 60n, readOnly: false, autoclear: false, directIo: true, partscan: true });
    expect(o).to.deep.include({ blockSize: 4096, shared: true, maxDevices: 8, fileName: 'name', api: 'legacy', busyRetries: 0, eagainRetries: 1, sharedLockTimeoutMs: 5 });
    expect(o.signal).to.equal(signal);
  });

  it('the api comes from IMGMOUNT_LOOP_API unless given; an unknown value there is an error', () => {
    process.env[LOOP_API_ENV] = 'legacy';
    expect(resolveLoopOptions().api).to.equal('legacy');
    expect(resolveLoopOptions({ api: 'configure' }).api).to.equal('configure');
    process.env[LOOP_API_ENV] = 'fast';
    expect(() => resolveLoopOptions()).to.throw(/IMGMOUNT_LOOP_API=fast is not one of auto, configure, legacy/);
  });

  it('refuses bad values with Node-style argument errors', () => {
    const bad: Array<[Record<string, unknown>, string]> = [
      [{ offset: -1 }, 'ERR_OUT_OF_RANGE'],
      [{ sizeLimit: 2n ** 64n }, 'ERR_OUT_OF_RANGE'],
      [{ offset: '0' }, 'ERR_INVALID_ARG_TYPE'],
      [{ readOnly: 1 }, 'ERR_INVALID_ARG_TYPE'],
      [{ blockSize: 1000 }, 'ERR_OUT_OF_RANGE'],
      [{ blockSize: 256 }, 'ERR_OUT_OF_RANGE'],
      [{ blockSize: 8192 }, 'ERR_OUT_OF_RANGE'],
      [{ maxDevices: 1.5 }, 'ERR_OUT_OF_RANGE'],
      [{ maxDevices: 2 ** 21 }, 'ERR_OUT_OF_RANGE'],
      [{ busyRetries: -1 }, 'ERR_OUT_OF_RANGE'],
      [{ fileName: 3 }, 'ERR_INVALID_ARG_TYPE'],
      [{ api: 'fast' }, 'ERR_INVALID_ARG_VALUE'],
      [{ signal: {} }, 'ERR_INVALID_ARG_TYPE'],
    ];
    for (const [o, code] of bad) expect(() => resolveLoopOptions(o as never), JSON.stringify(o, (_k, v) => (typeof v === 'bigint' ? `${v}n` : v))).to.throw().with.property('code', code);
    expect(() => resolveLoopOptions(null as never)).to.throw().with.property('code', 'ERR_INVALID_ARG_TYPE');
  });

  it('lo_flags from the options', () => {
    expect(loFlags(resolveLoopOptions())).to.equal(LO_FLAGS_READ_ONLY | LO_FLAGS_AUTOCLEAR);
    expect(loFlags(resolveLoopOptions({ readOnly: false, autoclear: false }))).to.equal(0);
    expect(loFlags(resolveLoopOptions({ partscan: true, directIo: true, autoclear: false }))).to.equal(LO_FLAGS_READ_ONLY | LO_FLAGS_PARTSCAN | LO_FLAGS_DIRECT_IO);
  });

  it('lo_file_name keeps the last 63 bytes of a long name, never half a UTF-8 character', () => {
    expect(loFileName('/images/a.sif')).to.equal('/images/a.sif');
    const exact = 'x'.repeat(63);
    expect(loFileName(exact)).to.equal(exact);
    const long = `/${'d'.repeat(100)}/alpine.sif`;
    expect(loFileName(long)).to.equal(long.slice(-63));
    const utf8 = `/${'d'.repeat(100)}/é${'x'.repeat(62)}`; // 'é' is 2 bytes: its second byte would start the kept tail
    expect(loFileName(utf8)).to.equal('x'.repeat(62));
    expect(Buffer.byteLength(loFileName(`/${'é'.repeat(100)}`))).to.be.at.most(63);
  });

  it('checkSource takes an fd, a path or { fd, path } and nothing else', () => {
    for (const ok of [0, 7, '/images/a.sif', { fd: 3, path: '/images/a.sif' }]) expect(() => checkSource(ok)).not.to.throw();
    expect(() => checkSource(-1)).to.throw().with.property('code', 'ERR_OUT_OF_RANGE');
    expect(() => checkSource(1.5)).to.throw().with.property('code', 'ERR_OUT_OF_RANGE');
    for (const bad of ['', 'a\0b', null, {}, { fd: 3 }, { path: '/x' }]) expect(() => checkSource(bad), String(bad)).to.throw().with.property('code', 'ERR_INVALID_ARG_TYPE');
  });
});

describe('unit: loop context and the native spec of an attempt', () => {
  const attempt = (a: Partial<Attempt> = {}): Attempt => ({ method: 'configure', device: undefined, attempt: 0, injectErrno: 0, ...a });

  it('an open backing file: its fd, no path for the call to open; every argument explicit', () => {
    const ctx = loopContext({ fd: 12, path: '/images/a.sif', owned: false }, resolveLoopOptions({ offset: 512, sizeLimit: 1024, blockSize: 4096 }));
    expect(ctx.flags).to.equal(LO_FLAGS_READ_ONLY | LO_FLAGS_AUTOCLEAR);
    expect(ctx.fileName).to.equal('/images/a.sif');
    expect(attachSpec(ctx, attempt())).to.deep.equal({
      imageFd: 12,
      imagePath: '',
      device: -1,
      openReadOnly: true,
      method: 'configure',
      offset: 512n,
      sizeLimit: 1024n,
      flags: LO_FLAGS_READ_ONLY | LO_FLAGS_AUTOCLEAR,
      blockSize: 4096,
      fileName: '/images/a.sif',
      injectErrno: 0,
    });
  });

  it('a path the call opens itself (fd -1); a device chosen by a test hook; an injected errno; the legacy method', () => {
    const ctx = loopContext({ fd: -1, path: '/images/b.sif', owned: false }, resolveLoopOptions({ readOnly: false, fileName: 'shown' }));
    const spec = attachSpec(ctx, attempt({ method: 'legacy', device: 7, attempt: 3, injectErrno: EAGAIN }));
    expect(spec).to.deep.include({ imageFd: -1, imagePath: '/images/b.sif', device: 7, openReadOnly: false, method: 'legacy', fileName: 'shown', injectErrno: EAGAIN });
    expect(spec.flags).to.equal(LO_FLAGS_AUTOCLEAR);
  });

  it('lo_file_name defaults to the backing path, shortened as the kernel keeps it', () => {
    const long = `/${'p'.repeat(80)}/image.sif`;
    expect(loopContext({ fd: 3, path: long, owned: true }, resolveLoopOptions()).fileName).to.equal(long.slice(-63));
  });
});

describe('unit: the fallback rule after a failed attempt', () => {
  const o = { api: 'auto', busyRetries: 2, eagainRetries: 1 } as const;
  const fresh = (): Tries => ({ busy: 0, eagain: 0, udev: 0 });

  it('EBUSY of the binding ioctl (another attacher won): retried, with back-off from the third, then ERR_LOOP_NO_FREE_DEVICE', () => {
    const tries = fresh();
    const err = sysErr(EBUSY, 'ioctl(LOOP_CONFIGURE)', '/dev/loop3');
    expect(afterFailure(err, o, tries)).to.deep.equal({ action: 'retry', reason: 'busy', wait: null });
    expect(afterFailure(sysErr(EBUSY, 'ioctl(LOOP_SET_FD)', '/dev/loop3'), o, tries)).to.deep.equal({ action: 'retry', reason: 'busy', wait: null });
    const last = afterFailure(err, o, tries);
    expect(last.action).to.equal('fail');
    const e = (last as { action: 'fail'; error: Error }).error as ImgmountError;
    expect(e.code).to.equal('ERR_LOOP_NO_FREE_DEVICE');
    expect(e.message).to.contain('2 retries lost the race for one (EBUSY');
    expect(e.cause).to.equal(err);
    expect(tries).to.deep.equal({ busy: 3, eagain: 0, udev: 0 });
    const more = { ...o, busyRetries: 5 };
    const t = fresh();
    const waits = [1, 2, 3, 4].map(() => afterFailure(err, more, t));
    expect(waits.map((w) => (w as { wait: unknown }).wait)).to.deep.equal([null, null, { backoffStep: 0, startMs: 1, maxMs: 50 }, { backoffStep: 1, startMs: 1, maxMs: 50 }]);
  });

  it('EBUSY of any other step is not a lost race', () => {
    expect(afterFailure(sysErr(EBUSY, 'ioctl(LOOP_SET_STATUS64)', '/dev/loop3'), o, fresh())).to.deep.equal({ action: 'other' });
  });

  it('EAGAIN of the binding ioctl: retried with back-off eagainRetries times, then the EAGAIN saying so', () => {
    const tries = fresh();
    const err = sysErr(EAGAIN, 'ioctl(LOOP_CONFIGURE)', '/dev/loop4');
    expect(afterFailure(err, o, tries)).to.deep.equal({ action: 'retry', reason: 'eagain', wait: { backoffStep: 0, startMs: 2, maxMs: 250 } });
    const last = afterFailure(err, o, tries) as { action: string; error: SystemError };
    expect(last.action).to.equal('fail');
    expect(last.error.code).to.equal('EAGAIN');
    expect(last.error.syscall).to.equal('ioctl(LOOP_CONFIGURE)');
    expect(last.error.message).to.equal("loop attach gave up after 1 retry (eagainRetries): EAGAIN: resource temporarily unavailable, ioctl(LOOP_CONFIGURE) '/dev/loop4'");
    expect(last.error.cause).to.equal(err);
  });

  it('LOOP_CONFIGURE unknown to the kernel (EINVAL, ENOTTY, ENOSYS): probe, but only with api auto', () => {
    for (const errno of [EINVAL, ENOTTY, ENOSYS]) {
      const err = sysErr(errno, 'ioctl(LOOP_CONFIGURE)', '/dev/loop0');
      expect(afterFailure(err, o, fresh())).to.deep.equal({ action: 'probe' });
      expect(afterFailure(err, { ...o, api: 'configure' }, fresh())).to.deep.equal({ action: 'other' });
    }
    expect(afterFailure(sysErr(EPERM, 'ioctl(LOOP_CONFIGURE)', '/dev/loop0'), o, fresh())).to.deep.equal({ action: 'other' });
    expect(afterFailure(sysErr(EINVAL, 'ioctl(LOOP_SET_FD)', '/dev/loop0'), o, fresh())).to.deep.equal({ action: 'other' });
  });

  it("a device node udev has not made yet: waited for, a bounded number of times", () => {
    const tries = fresh();
    for (const errno of [ENOENT, ENXIO]) expect(afterFailure(sysErr(errno, 'open', '/dev/loop12'), o, tries)).to.deep.equal({ action: 'retry', reason: 'udev', wait: { fixedMs: UDEV_STEP_MS } });
    for (let i = 2; i < UDEV_RETRIES; i++) afterFailure(sysErr(ENOENT, 'open', '/dev/loop12'), o, tries);
    const err = sysErr(ENOENT, 'open', '/dev/loop12');
    expect(afterFailure(err, o, tries)).to.deep.equal({ action: 'fail', error: err });
    expect(afterFailure(sysErr(ENOENT, 'open', '/images/a.sif'), o, fresh())).to.deep.equal({ action: 'other' });
  });

  it('no free device from LOOP_CTL_GET_FREE: ERR_LOOP_NO_FREE_DEVICE at once', () => {
    const err = sysErr(ENOSYS, 'ioctl(LOOP_CTL_GET_FREE)', '/dev/loop-control');
    const next = afterFailure(err, o, fresh()) as { action: string; error: ImgmountError };
    expect(next.action).to.equal('fail');
    expect(next.error.code).to.equal('ERR_LOOP_NO_FREE_DEVICE');
    expect(next.error.cause).to.equal(err);
  });

  it("anything else (a mount step's failure, an error of ours) is the caller's", () => {
    expect(afterFailure(sysErr(EINVAL, 'fsconfig(FSCONFIG_CMD_CREATE)'), o, fresh())).to.deep.equal({ action: 'other' });
    expect(afterFailure(new ImgmountError('ERR_MOUNT_FAILED', 'no'), o, fresh())).to.deep.equal({ action: 'other' });
    expect(afterFailure(new Error('plain'), o, fresh())).to.deep.equal({ action: 'other' });
  });
});

describe('unit: the check of what the kernel bound', () => {
  const ctx = loopContext({ fd: 3, path: '/images/a.sif', owned: false }, resolveLoopOptions({ offset: 4096, sizeLimit: 8192, maxDevices: 8 }));
  const status = (s: Partial<NativeLoopInfo> = {}): NativeLoopInfo => ({
    device: 2049,
    inode: 77,
    rdevice: 0,
    offset: 4096,
    sizeLimit: 8192,
    number: 3,
    flags: LO_FLAGS_READ_ONLY | LO_FLAGS_AUTOCLEAR,
    fileName: '/images/a.sif',
    ...s,
  });
  const bound = (b: Partial<BoundDevice> = {}): BoundDevice => ({ number: 3, path: '/dev/loop3', status: status(), imageDevice: 2049, imageInode: 77, ...b });

  it('what was asked passes', () => {
    expect(boundProblem(ctx, bound())).to.equal(undefined);
    expect(boundProblem(ctx, bound({ imageDevice: 2049n, status: status({ offset: 4096n }) }))).to.equal(undefined);
  });

  it('a device at or above maxDevices is ERR_LOOP_NO_FREE_DEVICE (checked first)', () => {
    const e = boundProblem(ctx, bound({ number: 8, path: '/dev/loop8', status: status({ offset: 0 }) }))!;
    expect(e.code).to.equal('ERR_LOOP_NO_FREE_DEVICE');
    expect(e.message).to.contain('none below the maximum of 8 (next free is /dev/loop8)');
    expect(e.details).to.deep.equal({ maxDevices: 8, next: 8 });
  });

  it('every mismatch is named in ERR_LOOP_VERIFY', () => {
    const e = boundProblem(ctx, bound({ imageInode: 78, status: status({ offset: 0, sizeLimit: 1, flags: LO_FLAGS_AUTOCLEAR }) }))!;
    expect(e.code).to.equal('ERR_LOOP_VERIFY');
    expect(e.path).to.equal('/dev/loop3');
    expect((e.details as { mismatches: string[] }).mismatches).to.deep.equal([
      "backing file is device 2049 inode 77, not the image's 2049/78",
      'offset is 0, not 4096',
      'size limit is 1, not 8192',
      'device is writable although read-only was asked',
    ]);
  });

  it('no status read is a verification failure', () => {
    const e = boundProblem(ctx, bound({ status: null }))!;
    expect(e.code).to.equal('ERR_LOOP_VERIFY');
    expect((e.details as { mismatches: string[] }).mismatches).to.deep.equal(['no status']);
  });

  it('statusMismatches: read-write asked but read-only bound, autoclear, partscan', () => {
    const want = expectationOf({ offset: 0n, sizeLimit: 0n, readOnly: false, autoclear: false, partscan: true }, 1, 2);
    expect(statusMismatches(status({ device: 1, inode: 2, offset: 0, sizeLimit: 0, flags: LO_FLAGS_READ_ONLY | LO_FLAGS_AUTOCLEAR }), want)).to.deep.equal([
      'device is read-only although read-write was asked (is the image opened read-only?)',
      'autoclear is true, not false',
      'partition scanning was not enabled',
    ]);
    // Partition scanning not asked for but on is fine (another attacher's business).
    expect(statusMismatches(status({ device: 1, inode: 2, offset: 0, sizeLimit: 0, flags: LO_FLAGS_PARTSCAN }), { ...want, partscan: false })).to.deep.equal([]);
  });
});
