// The target pinned in the mount's own native call (loopAttachMount's `pin`, which root() and
// mountPartition(image, 'path') use): each guard refuses before anything is bound, written or
// mounted, with a "pin:..." syscall that lib/ answers by pinning the target on its own; a call
// that passes them mounts on the directory it opened and hands over its fd; a failure after
// the intent was written takes the intent away again.
import { expect } from 'chai';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { SystemError } from '../../../lib/errors';
import { binding, type NativeLoopAttachSpec, type NativeMountSpec, type NativeTargetPin } from '../../../lib/native/binding';
import { LO_FLAGS_AUTOCLEAR, LO_FLAGS_READ_ONLY } from '../../../lib/loop/constants';
import { MOUNT_ATTR_RDONLY } from '../../../lib/mount/flags';
import { RESOLVE_NO_MAGICLINKS, RESOLVE_NO_SYMLINKS, isPinDeclined } from '../../../lib/path/pinned';
import { systemTargetGuard } from '../../../lib/path/system-targets';
import { rejection } from '../../support/expect-error';
import { testTmp } from '../../support/hooks';
import { mountDir, testImages } from '../../support/images';
import { requireKernel } from '../../support/kernel';
import { boundLoops, mountPoints, registerMountPoint } from '../../support/leaks';

const O_RDONLY = fs.constants.O_RDONLY;

function loopSpec(image: string, offset: number, size: number): NativeLoopAttachSpec {
  return {
    method: 'configure',
    imageFd: -1,
    imagePath: image,
    device: -1,
    openReadOnly: true,
    blockSize: 0,
    offset,
    sizeLimit: size,
    flags: LO_FLAGS_READ_ONLY | LO_FLAGS_AUTOCLEAR,
    fileName: '',
    injectErrno: 0,
  } as NativeLoopAttachSpec;
}

function mountSpec(target: string, pin: NativeTargetPin, fstype = 'squashfs'): NativeMountSpec {
  return { api: 'new', fstype, target, options: [['ro', null]], attrs: MOUNT_ATTR_RDONLY, detached: false, keepMountFd: false, pin };
}

const failure = (p: Promise<unknown>): Promise<SystemError> => rejection(p, SystemError);

describe('kernel: the target pinned in the mount call (loopAttachMount pin)', function () {
  let image: string;
  let offset: number;
  let size: number;
  before(function () {
    requireKernel(this);
    const img = testImages();
    image = img.sif;
    ({ offset, size } = img.sifParts.squashfs);
  });

  const bound = () => boundLoops().filter((l) => l.backingFile === image);

  function setup(name: string): { dir: string; pin: NativeTargetPin; intent: string } {
    const dir = registerMountPoint(mountDir(`pin-${name}`));
    const intent = path.join(testTmp, `pin-${name}.intent`);
    const pin: NativeTargetPin = {
      path: dir,
      resolve: RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS,
      expectName: dir,
      refuseIds: new BigUint64Array(0),
      refuseDevs: new BigUint64Array(0),
      intent: { tmp: `${intent}.${process.pid}.tmp`, path: intent, data: Buffer.from('{"intent":true}\n'), mode: 0o600 },
    };
    return { dir, pin, intent };
  }

  it('passes: mounts on the directory it opened, returns its fd and identity, and the intent is written', async () => {
    const { dir, pin, intent } = setup('ok');
    const r = await binding().loopAttachMount(loopSpec(image, offset, size), mountSpec(dir, pin), false);
    try {
      expect(r.target, 'the pinned target').to.include({ path: dir });
      // The fd is the directory, under the mount: what it names is the mounted root now.
      expect(fs.realpathSync(`/proc/self/fd/${r.target!.fd}`)).to.equal(dir);
      expect(mountPoints()).to.include(dir);
      expect(fs.readFileSync(intent, 'utf8')).to.equal('{"intent":true}\n');
      expect(fs.statSync(intent).mode & 0o777).to.equal(0o600);
      expect(Object.keys(testImages().files).every((f) => fs.existsSync(path.join(dir, f)))).to.equal(true);
    } finally {
      await binding().umountAt(r.target!.fd, '', 0, dir, false, true, intent);
    }
    expect(mountPoints()).to.not.include(dir);
    expect(fs.existsSync(intent), 'the intent goes in the unmount hop').to.equal(false);
    expect(bound()).to.deep.equal([]);
  });

  const refusals: Array<[string, string, string, (s: ReturnType<typeof setup>) => Promise<void> | void]> = [
    ['another kernel name', 'pin:name', 'EXDEV', (s) => void (s.pin.expectName = `${s.dir}-elsewhere`)],
    [
      'a refused identity (dev, ino)',
      'pin:identity',
      'EPERM',
      (s) => {
        const st = fs.statSync(s.dir, { bigint: true });
        // The second pair: pairs are read two numbers at a time.
        s.pin.refuseIds = BigUint64Array.of(st.dev, st.ino + 1n, st.dev, st.ino);
      },
    ],
    ['a refused filesystem (dev)', 'pin:identity', 'EPERM', (s) => void (s.pin.refuseDevs = BigUint64Array.of(fs.statSync(s.dir, { bigint: true }).dev))],
    [
      'a symlink on the path',
      'pin:openat2',
      'ELOOP',
      (s) => {
        const link = `${s.dir}-link`;
        fs.symlinkSync(s.dir, link);
        s.pin.path = link;
        s.pin.expectName = link;
      },
    ],
    [
      'an image whose owner changed',
      'pin:owner',
      'EPERM',
      (s) => {
        const fd = fs.openSync(image, O_RDONLY);
        const st = fs.fstatSync(fd);
        s.pin.imageOwner = { fd, uid: st.uid + 1, gid: st.gid, mode: st.mode & 0o7777 };
      },
    ],
    ['an image whose mode changed', 'pin:owner', 'EPERM', (s) => {
      const fd = fs.openSync(image, O_RDONLY);
      const st = fs.fstatSync(fd);
      s.pin.imageOwner = { fd, uid: st.uid, gid: st.gid, mode: (st.mode | 0o002) & 0o7777 };
    }],
    ['an intent file there already', 'pin:link', 'EEXIST', (s) => fs.writeFileSync(s.intent, 'theirs\n')],
  ];
  for (const [what, syscall, code, arrange] of refusals) {
    it(`refuses ${what} (${syscall}, ${code}) before anything is bound, written or mounted`, async () => {
      const s = setup(what.replace(/\W+/g, '-'));
      await arrange(s);
      const existed = fs.existsSync(s.intent) ? fs.readFileSync(s.intent, 'utf8') : null;
      try {
        const err = await failure(binding().loopAttachMount(loopSpec(image, offset, size), mountSpec(s.dir, s.pin), false));
        expect(err.syscall).to.equal(syscall);
        expect(err.code).to.equal(code);
        expect(isPinDeclined(err)).to.equal(true);
      } finally {
        if (s.pin.imageOwner) fs.closeSync(s.pin.imageOwner.fd);
      }
      expect(mountPoints()).to.not.include(s.dir);
      expect(bound()).to.deep.equal([]);
      expect(fs.existsSync(s.intent) ? fs.readFileSync(s.intent, 'utf8') : null, 'the intent file is as it was').to.equal(existed);
      expect(fs.readdirSync(testTmp).filter((f) => f.startsWith(path.basename(s.intent)) && f.endsWith('.tmp'))).to.deep.equal([]);
    });
  }

  it('takes identities only as BigUint64Arrays of whole (dev, ino) pairs: a TypeError, nothing done', async () => {
    for (const [what, change, message] of [
      ['an odd count', (p: NativeTargetPin) => void (p.refuseIds = BigUint64Array.of(1n, 2n, 3n)), /pin\.refuseIds must hold \(dev, ino\) pairs/],
      ['an array of pairs', (p: NativeTargetPin) => void ((p as unknown as { refuseIds: unknown }).refuseIds = [[1n, 2n]]), /pin\.refuseIds must be a BigUint64Array/],
      ['signed values', (p: NativeTargetPin) => void ((p as unknown as { refuseDevs: unknown }).refuseDevs = BigInt64Array.of(1n)), /pin\.refuseDevs must be a BigUint64Array/],
    ] as const) {
      const s = setup(`args-${what.replace(/\W+/g, '-')}`);
      change(s.pin);
      expect(() => binding().loopAttachMount(loopSpec(image, offset, size), mountSpec(s.dir, s.pin), false), what).to.throw(TypeError, message);
      expect(fs.existsSync(s.intent), what).to.equal(false);
    }
    expect(bound()).to.deep.equal([]);
  });

  it('a mount that fails after the intent was written takes it away (and the device, and the fd)', async () => {
    const { dir, pin, intent } = setup('mount-fails');
    // ext4 cannot read the squashfs partition: the attach succeeds, the mount fails.
    const err = await failure(binding().loopAttachMount(loopSpec(image, offset, size), mountSpec(dir, pin, 'ext4'), false));
    expect(err.syscall).to.match(/^fsconfig/);
    expect(isPinDeclined(err)).to.equal(false);
    expect(fs.existsSync(intent)).to.equal(false);
    expect(mountPoints()).to.not.include(dir);
    expect(bound()).to.deep.equal([]);
  });

  it('the system directories are what the guard refuses: /etc by identity', async () => {
    const g = await systemTargetGuard();
    const etc = fs.statSync('/etc', { bigint: true });
    const pairs = Array.from({ length: g.refuseIds.length / 2 }, (_, i) => [g.refuseIds[2 * i], g.refuseIds[2 * i + 1]]);
    expect(pairs.some(([dev, ino]) => dev === etc.dev && ino === etc.ino)).to.equal(true);
    const proc = fs.statSync('/proc', { bigint: true });
    expect(Array.from(g.refuseDevs)).to.include(proc.dev);
  });
});
