// Faults leave nothing: every native step an operation makes (opening the image, loop attach,
// mount, the path calls, writing its mount records, the namespace helper's steps) is made to
// fail in turn with EBUSY, EAGAIN, ENOSPC, ENOMEM and EIO. The operation either succeeds (the
// library retries that errno) or rejects with an error that carries the injected errno; either
// way, once it is over (and, if it succeeded, closed), nothing is left: no mount under the scene
// (here or in the other namespace), no loop device bound to the scene's image copy, no helper
// process, no record or session directory, no fd.
//
// The matrix comes from the hit counters (lib/native/faults): a clean run armed with no faults
// says which steps the operation makes and how often; then each hit of each step fails once.
// Record writes are native steps too (replaceFile: 'open(O_EXCL tmp)', 'write(tmp)',
// 'close(tmp)', then 'link(tmp)' for a record's first write or 'rename(tmp)' for the later
// ones), so ENOSPC and EIO at writing a record are in the matrix.
import { expect } from 'chai';
import { spawnSync, type ChildProcess } from 'node:child_process';
import { constants as osConstants } from 'node:os';
import { init } from '../../../lib/image/init';
import { mountPartition } from '../../../lib/mount';
import { mountImage } from '../../../lib/root/mount-image';
import { root, type RootOptions } from '../../../lib/root/root';
import { binding, helperPath } from '../../../lib/native/binding';
import { INJECTABLE_ERRNOS, faultHits, injectFaults, type FaultRule } from '../../../lib/native/faults';
import { openFds } from '../../support/fds';
import { restoreEnv, setEnv } from '../../support/forgery';
import { testImages } from '../../support/images';
import { requireKernel, startNamespaceHolder, stopHolder } from '../../support/kernel';
import { leftovers, scene, type Scene } from '../../support/scene';

interface Closable {
  close(): Promise<void>;
}

interface Operation {
  name: string;
  run(s: Scene): Promise<Closable>;
  /** Pids whose mount namespaces the operation mounts into. */
  namespaces?: () => number[];
}

/** root() or mountImage() of a fresh init() of the scene's image; the image closes with the result (or on failure). */
function withImage(mount: (img: Awaited<ReturnType<typeof init>>, s: Scene) => Promise<Closable>): (s: Scene) => Promise<Closable> {
  return async (s) => {
    const img = await init(s.sif);
    try {
      const m = await mount(img, s);
      return { close: async () => (await m.close(), await img.close()) };
    } catch (err) {
      await img.close();
      throw err;
    }
  };
}

const rootOp = (name: string, options: RootOptions): Operation => ({ name, run: withImage((img, s) => root(img, s.target('root'), options)) });

let holder: ChildProcess | undefined;

const operations: Operation[] = [
  rootOp('root(): kernel driver, tmpfs overlay, data partition', { driver: 'kernel', writableTmpfs: true, data: [{ partition: 'data', path: '/data' }] }),
  rootOp('root(): FUSE driver, tmpfs overlay (fuse-overlayfs)', { driver: 'fuse', writableTmpfs: true }),
  {
    name: 'root(): kernel driver, tmpfs overlay, built here and moved into another mount namespace',
    run: withImage((img, s) => root(img, s.target('root'), { driver: 'kernel', writableTmpfs: true, namespace: { pid: holder!.pid! } })),
    namespaces: () => [holder!.pid!],
  },
  { name: 'mountImage(): kernel driver', run: withImage((img, s) => mountImage(img, s.target('one'), { driver: 'kernel' })) },
  { name: 'mountImage(): FUSE driver', run: withImage((img, s) => mountImage(img, s.target('one'), { driver: 'fuse' })) },
  {
    name: 'mountPartition(): LOOP_CONFIGURE and the new mount API',
    run: async (s) => {
      const p = testImages().sifParts.squashfs;
      const m = await mountPartition(s.sif, s.target('part'), { fstype: 'squashfs', offset: p.offset, sizeLimit: p.size });
      return { close: () => m.unmount() };
    },
  },
  {
    name: 'mountPartition(): legacy loop ioctls and mount(2)',
    run: async (s) => {
      const p = testImages().sifParts.squashfs;
      const m = await mountPartition(s.sif, s.target('part'), { fstype: 'squashfs', offset: p.offset, sizeLimit: p.size, api: 'legacy', loop: { api: 'legacy' } });
      return { close: () => m.unmount() };
    },
  },
];

/** Every error in a rejection: the error, its causes, an AggregateError's errors. */
function errorChain(err: unknown, out: Array<{ code?: unknown; errno?: unknown; syscall?: unknown; message?: unknown }> = []): typeof out {
  if (err === null || typeof err !== 'object' || out.includes(err as never) || out.length > 32) return out;
  out.push(err as never);
  errorChain((err as { cause?: unknown }).cause, out);
  for (const e of (err as { errors?: unknown[] }).errors ?? []) errorChain(e, out);
  return out;
}

interface Outcome {
  /** "EBUSY at ioctl(LOOP_CONFIGURE)", for the summary. */
  fault: string;
  result: 'succeeded' | 'rejected';
}

/** One run with `arm` armed: the outcome, after checking that it left nothing. */
async function faultRun(op: Operation, what: string, fault: string, arm: () => void, reached: () => boolean, expectCode: string): Promise<Outcome> {
  const s = scene('faults');
  setEnv('IMGMOUNT_STATE_DIR', s.state);
  const fds = openFds();
  let handle: Closable | undefined;
  let error: unknown;
  let wasReached = false;
  arm();
  try {
    handle = await op.run(s);
  } catch (err) {
    error = err;
  } finally {
    wasReached = reached();
    injectFaults(null);
  }
  if (handle) await handle.close();
  expect(wasReached, `${what}: the run never reached the step the clean run made`).to.equal(true);
  if (error !== undefined) {
    // A clear error: coded, and saying what failed (the injected errno is in its chain).
    const chain = errorChain(error);
    expect(chain[0], `${what}: rejected with ${String(error)}`).to.be.instanceOf(Error);
    expect((chain[0] as { code?: unknown }).code, `${what}: ${(error as Error).stack}`).to.be.a('string');
    expect(chain.map((e) => e.code), `${what}: ${(error as Error).stack}`).to.include(expectCode);
  }
  expect(await leftovers(s, process.pid, op.namespaces?.() ?? []), `${what}: ${error === undefined ? 'succeeded, then closed' : `rejected (${(error as Error).message})`}`).to.deep.equal([]);
  expect(openFds(), `${what}: fds`).to.deep.equal(fds);
  return { fault, result: error === undefined ? 'succeeded' : 'rejected' };
}

/** The clean run, armed with no faults: which native steps it makes, and how often. */
async function learn(op: Operation): Promise<Record<string, number>> {
  // Once unarmed first: what is probed once per process (capabilities, the mount API) is done.
  const warm = scene('faults');
  setEnv('IMGMOUNT_STATE_DIR', warm.state);
  await (await op.run(warm)).close();
  const s = scene('faults');
  setEnv('IMGMOUNT_STATE_DIR', s.state);
  const fds = openFds();
  injectFaults([]);
  let handle: Closable;
  let learned: Record<string, number>;
  try {
    handle = await op.run(s);
  } finally {
    learned = faultHits();
    injectFaults(null);
  }
  await handle.close();
  expect(await leftovers(s, process.pid, op.namespaces?.() ?? []), `${op.name}: clean run, closed`).to.deep.equal([]);
  expect(openFds(), `${op.name}: clean run fds`).to.deep.equal(fds);
  return learned;
}

describe('kernel: faults leave nothing (every native step and record write of an operation fails in turn)', function () {
  this.timeout(900_000);
  before(async function () {
    requireKernel(this);
    holder = await startNamespaceHolder(['-m', '--propagation', 'private']);
  });
  after(async () => {
    if (holder) await stopHolder(holder);
  });
  afterEach(() => {
    injectFaults(null);
    restoreEnv();
  });

  for (const op of operations) {
    it(`${op.name}`, async () => {
      const hits = await learn(op);
      const steps = Object.entries(hits).sort(([a], [b]) => a.localeCompare(b));
      expect(steps.length, `${op.name}: steps hit`).to.be.greaterThan(3);
      const outcomes: Outcome[] = [];
      for (const [step, n] of steps) {
        for (let skip = 0; skip < n; skip++) {
          for (const errno of INJECTABLE_ERRNOS) {
            const rule: FaultRule = { step, errno, skip, times: 1 };
            outcomes.push(
              await faultRun(
                op,
                `${op.name}: ${errno} at hit ${skip + 1}/${n} of ${step}`,
                `${errno} at ${step}`,
                () => injectFaults([rule]),
                () => (faultHits()[step] ?? 0) > skip,
                errno,
              ),
            );
          }
        }
      }
      const succeeded = outcomes.filter((o) => o.result === 'succeeded');
      const total = steps.reduce((a, [, n]) => a + n, 0);
      const retried = [...new Set(succeeded.map((o) => o.fault))];
      if (process.env.IMGMOUNT_TEST_FAULTS_STEPS) console.log(`      steps: ${steps.map(([k, n]) => `${k} x${n}`).join(', ')}`);
      console.log(
        `      ${op.name}: ${steps.length} steps, ${total} hits (${(hits['link(tmp)'] ?? 0) + (hits['rename(tmp)'] ?? 0)} record writes) -> ${outcomes.length} faults: ` +
          `${outcomes.length - succeeded.length} rejected, ${succeeded.length} succeeded${retried.length ? ` (${retried.join('; ')})` : ''}`,
      );
      expect(outcomes.length).to.equal(total * INJECTABLE_ERRNOS.length);
    });
  }
});

describe('kernel: fault injection is inert unless a test arms it', function () {
  before(function () {
    requireKernel(this);
  });
  afterEach(() => injectFaults(null));

  const { EIO, ENOSYS, EPERM, EINVAL } = osConstants.errno;

  it('disarmed, nothing is counted or failed; armed, exactly the asked hits fail and every hit is counted', async () => {
    const b = binding();
    expect(b.faultHits()).to.deep.equal({});
    const free = await b.loopCtlGetFree();
    expect(free).to.be.a('number');
    expect(b.faultHits(), 'disarmed: nothing counted').to.deep.equal({});
    injectFaults([{ step: 'ioctl(LOOP_CTL_GET_FREE)', errno: 'EBUSY', skip: 1, times: 2 }]);
    const results: Array<number | string> = [];
    for (let i = 0; i < 4; i++) results.push(await b.loopCtlGetFree().catch((e: NodeJS.ErrnoException) => `${e.code} ${e.syscall}`));
    expect(results.map((r) => (typeof r === 'number' ? 'ok' : r))).to.deep.equal(['ok', 'EBUSY ioctl(LOOP_CTL_GET_FREE)', 'EBUSY ioctl(LOOP_CTL_GET_FREE)', 'ok']);
    expect(faultHits()).to.deep.equal({ 'open(/dev/loop-control)': 4, 'ioctl(LOOP_CTL_GET_FREE)': 4 });
    injectFaults(null);
    expect(faultHits()).to.deep.equal({});
  });

  it('only EBUSY, EAGAIN, ENOSPC, ENOMEM and EIO can be injected: no errno that sends a caller to a fallback', () => {
    for (const e of [ENOSYS, EPERM, EINVAL]) {
      expect(() => injectFaults([{ step: 'openat2', errno: e! }])).to.throw(RangeError, /may not be injected/);
      expect(() => binding().injectFaults([{ step: 'openat2', errno: e! }])).to.throw(RangeError, /may not be injected/);
    }
    expect(() => injectFaults([{ step: 'nsenter:openat2(RESOLVE_IN_ROOT)', errno: 'ENOSYS' as never }])).to.throw(RangeError);
    expect(binding().faultHits(), 'a refused arming arms nothing').to.deep.equal({});
  });

  it('the namespace helper ignores IMGMOUNT_TEST_FAULTS without --test-faults, and with it fails only the asked step', () => {
    const run = (args: string[], faults: string) =>
      spawnSync(helperPath(), ['--result', '1', ...args, 'umount', '/proc/self/fd/does-not-exist', '0'], {
        env: { PATH: '/usr/bin:/bin', IMGMOUNT_TEST_FAULTS: faults },
        encoding: 'utf8',
      });
    // umount2 of a path that does not exist: ENOENT from the kernel.
    const plain = run([], `umount2,${EIO},0,1`);
    expect([plain.status, plain.stdout]).to.deep.equal([1, `ERR ${osConstants.errno.ENOENT} umount2\n`]);
    const armed = run(['--test-faults'], `umount2,${EIO},0,1`);
    expect([armed.status, armed.stdout]).to.deep.equal([1, `H umount2 1\nERR ${EIO} umount2\n`]);
    // An errno that may not be injected, or a malformed spec, is a usage error: nothing runs.
    for (const bad of [`umount2,${ENOSYS},0,1`, 'umount2,5', 'umount2,5,0,1;;']) {
      const r = run(['--test-faults'], bad);
      expect([r.status, r.stdout], bad).to.deep.equal([2, `ERR ${EINVAL} usage(IMGMOUNT_TEST_FAULTS)\n`]);
    }
  });
});
