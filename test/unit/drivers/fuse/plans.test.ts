// The FUSE driver's plans (lib/drivers/fuse/plan.ts and one per filesystem): what each helper
// is started as, for the driver's inputs, without privilege and without mounting. The kernel
// tests (test/kernel/drivers/fuse.test.ts) run the same plans for real.
import { expect } from 'chai';
import { ImgmountError } from '../../../../lib/errors';
import type { FuseBinaries } from '../../../../lib/drivers/fuse/binaries';
import { fuse2fsArgs, fuse2fsPlan } from '../../../../lib/drivers/fuse/fuse2fs';
import { GOCRYPTFS_EXIT_PASSWORD_INCORRECT, gocryptfsArgs, gocryptfsInput, gocryptfsPlan, isKeyRejection, keyRejected } from '../../../../lib/drivers/fuse/gocryptfs';
import { handOverLayers, overlayArgs, overlayOptions, overlayPlan } from '../../../../lib/drivers/fuse/overlayfs';
import { fdPassingMount, helperStep, needProgram, type PlanInput, type Step } from '../../../../lib/drivers/fuse/plan';
import { squashfuseArgs, squashfusePlan } from '../../../../lib/drivers/fuse/squashfuse';
import type { PinnedDir } from '../../../../lib/path/pinned';

const SQUASHFUSE = '/usr/bin/squashfuse_ll';
const FUSE2FS = '/usr/sbin/fuse2fs';
const GOCRYPTFS = '/usr/bin/gocryptfs';
const OVERLAYFS = '/usr/bin/fuse-overlayfs';

const bins: FuseBinaries = {
  squashfuse: SQUASHFUSE,
  fuse2fs: FUSE2FS,
  gocryptfs: GOCRYPTFS,
  fuseOverlayfs: OVERLAYFS,
  fusermount3: '/usr/bin/fusermount3',
  // As on Debian: fuse2fs is a libfuse 2 program and mounts by itself.
  fdPassing: { [SQUASHFUSE]: true, [GOCRYPTFS]: true, [OVERLAYFS]: true, [FUSE2FS]: false },
  searched: ['/usr/sbin', '/usr/bin'],
};

// Only its identity matters to a plan (the step carries it to bring-up).
const pinned = { path: '/run/c1/rootfs' } as unknown as PinnedDir;
const SESSION = '/run/imgmount/sessions/fuse-0123456789ab';

/** Root in our own namespace, a pinned target, helpers that outlive us (log files). */
function rootInput(over: Partial<PlanInput> = {}): PlanInput {
  return {
    bins,
    params: { offset: 0, flags: 0, fsOptions: [] },
    euid: 0,
    readOnly: true,
    target: '/run/c1/rootfs',
    pinned,
    allowOtherHere: true,
    fdPassing: 'auto',
    staged: true,
    sessionDir: SESSION,
    dieWithOwner: false,
    timeoutMs: 10000,
    layer: 0,
    ...over,
  };
}

/** A user without privilege, no namespace, helpers dying with us (no session directory). */
function userInput(over: Partial<PlanInput> = {}): PlanInput {
  return {
    bins,
    params: { offset: 0, flags: 0, fsOptions: [] },
    euid: 1000,
    readOnly: true,
    target: '/home/u/rootfs',
    pinned,
    allowOtherHere: false,
    fdPassing: 'auto',
    staged: false,
    dieWithOwner: true,
    timeoutMs: 10000,
    layer: 0,
    ...over,
  };
}

/** The step without its argv builder, for deep comparison. */
function fields(step: Step): Omit<Step, 'argv'> {
  const { argv: _argv, ...rest } = step;
  return rest;
}

describe('fuse plans: squashfuse', () => {
  it('as root: a passed /dev/fuse fd, our mount flags (no nosuid,nodev asked of it), allow_other, the offset', () => {
    const step = squashfusePlan(rootInput({ params: { offset: 4096, flags: 0, fsOptions: [] } }), 7, 4096, null);
    expect(fields(step)).to.deep.equal({
      program: SQUASHFUSE,
      target: '/run/c1/rootfs',
      pinned,
      readOnly: true,
      allowOther: true,
      noexec: false,
      fdPassing: true,
      timeoutMs: 10000,
      logFile: `${SESSION}/0-squashfuse_ll.log`,
      sourceFd: 7,
    });
    expect(step.argv('/proc/self/fd/3', '/dev/fd/4')).to.deep.equal(['-f', '-o', 'ro,allow_other,offset=4096', '/proc/self/fd/3', '/dev/fd/4']);
  });

  it('without privilege: mounts by itself with nosuid,nodev, no allow_other, the owner shown, no offset at 0', () => {
    const input = userInput({ params: { offset: 0, flags: 0, fsOptions: [], owner: { uid: 1000, gid: 100 } } });
    const step = squashfusePlan(input, 3, 0, null);
    expect(fields(step)).to.deep.equal({
      program: SQUASHFUSE,
      target: '/home/u/rootfs',
      pinned,
      readOnly: true,
      allowOther: false,
      noexec: false,
      fdPassing: false,
      timeoutMs: 10000,
      sourceFd: 3,
    });
    expect(step.argv('/proc/self/fd/3', '/home/u/rootfs')).to.deep.equal(['-f', '-o', 'ro,uid=1000,gid=100,nosuid,nodev', '/proc/self/fd/3', '/home/u/rootfs']);
  });

  it("as root with fdPassing false: mounts by itself on the session's staging directory; MS_NOEXEC carries over", () => {
    const step = squashfusePlan(rootInput({ fdPassing: false, layer: 2, params: { offset: 0, flags: 8, fsOptions: [] } }), 9, 0, null);
    expect(step.fdPassing).to.equal(false);
    expect(step.staging).to.equal(`${SESSION}/stage-2`);
    expect(step.noexec).to.equal(true);
    expect(step.logFile).to.equal(`${SESSION}/2-squashfuse_ll.log`);
    expect(step.argv('/proc/self/fd/3', `${SESSION}/stage-2`)).to.deep.equal(['-f', '-o', 'ro,allow_other,nosuid,nodev', '/proc/self/fd/3', `${SESSION}/stage-2`]);
  });

  it('into a user namespace: the final helper runs there and mounts by itself, even as root; allow_other', () => {
    const userns = { userns: 42 };
    const step = squashfusePlan(rootInput({ userns, staged: false, allowOtherHere: false }), 5, 0, null);
    expect(step.fdPassing).to.equal(false);
    expect(step.userns).to.equal(userns);
    expect(step.staging).to.equal(undefined);
    expect(step.allowOther).to.equal(true);
    expect(step.argv('/proc/self/fd/3', '/run/c1/rootfs')).to.deep.equal(['-f', '-o', 'ro,allow_other,nosuid,nodev', '/proc/self/fd/3', '/run/c1/rootfs']);
  });

  it('into another mount namespace (root): served here with a passed fd, then moved; allow_other', () => {
    const moveInto = { pid: 4242 };
    const { pinned: _p, ...noPin } = rootInput();
    const step = squashfusePlan({ ...noPin, moveInto, allowOtherHere: false }, 5, 0, null);
    expect(step.moveInto).to.equal(moveInto);
    expect(step.pinned).to.equal(undefined);
    expect(step.fdPassing).to.equal(true);
    expect(step.allowOther).to.equal(true);
  });

  it('at an inner mount of a chain: no pin, no namespace, no allow_other, no owner', () => {
    const input = rootInput({ userns: { userns: 42 }, params: { offset: 512, flags: 0, fsOptions: [], owner: { uid: 1, gid: 1 } } });
    const step = squashfusePlan(input, 6, 512, `${SESSION}/cipher`);
    expect(fields(step)).to.deep.equal({
      program: SQUASHFUSE,
      target: `${SESSION}/cipher`,
      readOnly: true,
      allowOther: false,
      noexec: false,
      fdPassing: true,
      timeoutMs: 10000,
      logFile: `${SESSION}/0-squashfuse_ll.log`,
      sourceFd: 6,
    });
    expect(step.argv('/proc/self/fd/3', '/dev/fd/4')).to.deep.equal(['-f', '-o', 'ro,offset=512', '/proc/self/fd/3', '/dev/fd/4']);
  });

  it('no squashfuse installed: ERR_FUSE_UNAVAILABLE naming what was searched', () => {
    expect(() => squashfusePlan(rootInput({ bins: { ...bins, squashfuse: null } }), 3, 0, null))
      .to.throw(ImgmountError, /^squashfuse_ll or squashfuse not found \(searched \/usr\/sbin:\/usr\/bin\), so the FUSE driver cannot mount squashfs: /)
      .with.property('code', 'ERR_FUSE_UNAVAILABLE');
  });

  it('squashfuseArgs: every option in its place', () => {
    expect(squashfuseArgs({ offset: 1, allowOther: true, selfMount: true, owner: { uid: 0, gid: 0 } }, 'S', 'M')).to.deep.equal([
      '-f', '-o', 'ro,allow_other,uid=0,gid=0,offset=1,nosuid,nodev', 'S', 'M',
    ]);
    expect(squashfuseArgs({ offset: 0, allowOther: false, selfMount: false }, 'S', 'M')).to.deep.equal(['-f', '-o', 'ro', 'S', 'M']);
  });
});

describe('fuse plans: fuse2fs', () => {
  it('as root: mounts by itself (libfuse 2) on the staging directory, writable, default_permissions', () => {
    const step = fuse2fsPlan(rootInput({ readOnly: false, params: { offset: 65536, flags: 0, fsOptions: [] } }), 11);
    expect(fields(step)).to.deep.equal({
      program: FUSE2FS,
      target: '/run/c1/rootfs',
      pinned,
      readOnly: false,
      allowOther: true,
      noexec: false,
      fdPassing: false,
      timeoutMs: 10000,
      logFile: `${SESSION}/0-fuse2fs.log`,
      staging: `${SESSION}/stage-0`,
      sourceFd: 11,
    });
    expect(step.argv('/proc/self/fd/3', `${SESSION}/stage-0`)).to.deep.equal([
      '/proc/self/fd/3', `${SESSION}/stage-0`, '-f', '-o', 'allow_other,default_permissions,nosuid,nodev,offset=65536',
    ]);
  });

  it('without privilege: fakeroot instead of default_permissions, read-only as asked', () => {
    const step = fuse2fsPlan(userInput({ readOnly: true }), 3);
    expect(step.argv('/proc/self/fd/3', '/home/u/rootfs')).to.deep.equal(['/proc/self/fd/3', '/home/u/rootfs', '-f', '-o', 'ro,fakeroot,nosuid,nodev']);
  });

  it('in a user namespace: no fakeroot (its uid 0 is root there), allow_other', () => {
    const step = fuse2fsPlan(userInput({ readOnly: false, userns: { userns: 7 } }), 3);
    expect(step.userns).to.deep.equal({ userns: 7 });
    expect(step.argv('/proc/self/fd/3', '/home/u/rootfs')).to.deep.equal(['/proc/self/fd/3', '/home/u/rootfs', '-f', '-o', 'allow_other,default_permissions,nosuid,nodev']);
  });

  it('no fuse2fs installed: ERR_FUSE_UNAVAILABLE', () => {
    expect(() => fuse2fsPlan(rootInput({ bins: { ...bins, fuse2fs: null } }), 3))
      .to.throw(/^fuse2fs not found \(searched \/usr\/sbin:\/usr\/bin\), so the FUSE driver cannot mount ext3: install the Debian package fuse2fs/)
      .with.property('code', 'ERR_FUSE_UNAVAILABLE');
  });

  it('fuse2fsArgs: every option in its place', () => {
    expect(fuse2fsArgs({ offset: 2, readOnly: true, allowOther: true, fakeroot: true }, 'S', 'M')).to.deep.equal(['S', 'M', '-f', '-o', 'ro,fakeroot,allow_other,nosuid,nodev,offset=2']);
  });
});

describe('fuse plans: fuse-overlayfs', () => {
  const layers = ['lowerdir=/proc/self/fd/12:/proc/self/fd/15,upperdir=/proc/self/fd/20,workdir=/proc/self/fd/21', 'xino=off', 'index=off,userxattr'];

  it('pinned layers become its fds 3, 4, ...; kernel-only options dropped; writable with an upper layer', () => {
    const step = overlayPlan(rootInput({ readOnly: false, params: { offset: 0, flags: 0, fsOptions: layers } }));
    expect(fields(step)).to.deep.equal({
      program: OVERLAYFS,
      target: '/run/c1/rootfs',
      pinned,
      readOnly: false,
      allowOther: true,
      noexec: false,
      fdPassing: true,
      timeoutMs: 10000,
      logFile: `${SESSION}/0-fuse-overlayfs.log`,
      extraFds: [12, 15, 20, 21],
    });
    expect(step.argv(null, '/dev/fd/7')).to.deep.equal([
      '-f', '-o', 'lowerdir=/proc/self/fd/3:/proc/self/fd/4,upperdir=/proc/self/fd/5,workdir=/proc/self/fd/6,allow_other,noacl', '/dev/fd/7',
    ]);
  });

  it('read-only without an upper layer, whatever the flags say', () => {
    const step = overlayPlan(userInput({ readOnly: false, params: { offset: 0, flags: 0, fsOptions: ['lowerdir=/a:/b'] } }));
    expect(step.readOnly).to.equal(true);
    expect(step.extraFds).to.deep.equal([]);
    expect(step.argv(null, '/home/u/rootfs')).to.deep.equal(['-f', '-o', 'lowerdir=/a:/b,ro,noacl', '/home/u/rootfs']);
  });

  it('handOverLayers: one child fd per distinct fd, in order of appearance; a path below an fd is left alone', () => {
    expect(handOverLayers(['lowerdir=/proc/self/fd/9:/proc/self/fd/8:/proc/self/fd/9', 'upperdir=/proc/self/fd/8/upper'])).to.deep.equal({
      options: ['lowerdir=/proc/self/fd/3:/proc/self/fd/4:/proc/self/fd/3', 'upperdir=/proc/self/fd/8/upper'],
      fds: [9, 8],
    });
  });

  it('overlayOptions: lowerdir required, upperdir and workdir together, non-strings refused', () => {
    expect(overlayOptions(['lowerdir=/a,redirect_dir=on', 'volatile'])).to.deep.equal(['lowerdir=/a', 'volatile']);
    expect(() => overlayOptions(['upperdir=/u,workdir=/w'])).to.throw(/must give lowerdir= for an overlay/);
    expect(() => overlayOptions(['lowerdir=/a,upperdir=/u'])).to.throw(/must give upperdir= and workdir= together/);
    expect(() => overlayOptions([3 as unknown as string])).to.throw(/must be strings/);
  });

  it('overlayArgs: allow_other, then ro, then noacl', () => {
    expect(overlayArgs({ readOnly: true, allowOther: true }, ['lowerdir=/a'], 'M')).to.deep.equal(['-f', '-o', 'lowerdir=/a,allow_other,ro,noacl', 'M']);
  });

  it('no fuse-overlayfs installed: ERR_FUSE_UNAVAILABLE', () => {
    expect(() => overlayPlan(rootInput({ bins: { ...bins, fuseOverlayfs: null }, params: { offset: 0, flags: 0, fsOptions: ['lowerdir=/a'] } })))
      .to.throw(/^fuse-overlayfs not found .* so the FUSE driver cannot mount overlays:/)
      .with.property('code', 'ERR_FUSE_UNAVAILABLE');
  });
});

describe('fuse plans: gocryptfs', () => {
  it('decrypts the cipher mount at the plain one, the key on stdin, never allow_other', () => {
    const key = Buffer.from('secret\n');
    const step = gocryptfsPlan(rootInput({ layer: 1 }), key, `${SESSION}/cipher`, `${SESSION}/plain`);
    expect(fields(step)).to.deep.equal({
      program: GOCRYPTFS,
      target: `${SESSION}/plain`,
      readOnly: true,
      allowOther: false,
      noexec: false,
      fdPassing: true,
      timeoutMs: 10000,
      logFile: `${SESSION}/1-gocryptfs.log`,
      input: Buffer.from('secret\n'),
    });
    expect(step.argv(null, '/dev/fd/3')).to.deep.equal(['-fg', '-ro', '--', `${SESSION}/cipher`, '/dev/fd/3']);
  });

  it('gocryptfsArgs: -allow_other when asked', () => {
    expect(gocryptfsArgs({ allowOther: true }, 'C', 'P')).to.deep.equal(['-fg', '-ro', '-allow_other', '--', 'C', 'P']);
  });

  it('gocryptfsInput: one line ending in a newline; missing, empty, multi-line or NUL keys refused', () => {
    expect(gocryptfsInput(Buffer.from('pw'))).to.deep.equal(Buffer.from('pw\n'));
    expect(gocryptfsInput(Buffer.from('pw\n'))).to.deep.equal(Buffer.from('pw\n'));
    expect(gocryptfsInput(new Uint8Array([0x61]))).to.deep.equal(Buffer.from('a\n'));
    expect(() => gocryptfsInput(undefined)).to.throw(/is required to mount a gocryptfs partition/);
    expect(() => gocryptfsInput('pw')).to.throw(/must be a Buffer/);
    expect(() => gocryptfsInput(Buffer.from('\n'))).to.throw(/must not be empty/);
    expect(() => gocryptfsInput(Buffer.from('a\nb'))).to.throw(/must be one line/);
    expect(() => gocryptfsInput(Buffer.from('a\0b'))).to.throw(/must be one line/);
  });

  it("a wrong key (gocryptfs' exit status 12) becomes ERR_KEY_REJECTED with its output; other failures stay", () => {
    const failed = new ImgmountError('ERR_HELPER_FAILED', 'gocryptfs exited', { details: { program: 'gocryptfs', code: 12, output: 'Password incorrect.' } });
    expect(GOCRYPTFS_EXIT_PASSWORD_INCORRECT).to.equal(12);
    expect(isKeyRejection(failed)).to.equal(true);
    expect(isKeyRejection(new ImgmountError('ERR_HELPER_FAILED', 'gocryptfs exited', { details: { code: 1 } }))).to.equal(false);
    expect(isKeyRejection(new ImgmountError('ERR_HELPER_TIMEOUT', 'slow', { details: { code: 12 } }))).to.equal(false);
    const e = keyRejected(failed, '/images/enc.sif');
    expect(e.code).to.equal('ERR_KEY_REJECTED');
    expect(e.message).to.equal('gocryptfs rejected the key for the gocryptfs partition of /images/enc.sif: Password incorrect.');
    expect(e.cause).to.equal(failed);
    expect(e.details).to.deep.equal({ program: 'gocryptfs', code: 12 });
    expect(keyRejected(new ImgmountError('ERR_HELPER_FAILED', 'x', { details: { code: 12, output: '' } }), 'img').message).to.equal(
      'gocryptfs rejected the key for the gocryptfs partition of img: password incorrect',
    );
  });
});

describe('fuse plans: what every helper shares', () => {
  it('helperStep: no log file when helpers die with us; the session numbers logs and staging by layer', () => {
    expect(helperStep(rootInput({ dieWithOwner: true, layer: 1 }), FUSE2FS, null)).to.deep.equal({
      program: FUSE2FS,
      target: '/run/c1/rootfs',
      pinned,
      readOnly: true,
      allowOther: true,
      noexec: false,
      fdPassing: false,
      timeoutMs: 10000,
      staging: `${SESSION}/stage-1`,
    });
  });

  it('helperStep: the abort signal goes with the step', () => {
    const signal = new AbortController().signal;
    expect(helperStep(userInput({ signal }), SQUASHFUSE, null).signal).to.equal(signal);
  });

  it('needProgram: the path, or ERR_FUSE_UNAVAILABLE for the role', () => {
    expect(needProgram(bins, 'gocryptfs', 'x')).to.equal(GOCRYPTFS);
    expect(needProgram(bins, 'fuse-overlayfs', 'x')).to.equal(OVERLAYFS);
    expect(() => needProgram({ ...bins, gocryptfs: null }, 'gocryptfs', 'mount gocryptfs partitions')).to.throw(/^gocryptfs not found .*cannot mount gocryptfs partitions:/);
  });

  it('fdPassingMount: nosuid|nodev (+ro, +noexec), the fd and ids, allow_other, subtype unless the mount is made detached', () => {
    expect(fdPassingMount({ program: SQUASHFUSE, readOnly: true, noexec: false, allowOther: true }, 9, 0, 0)).to.deep.equal({
      flags: 7,
      data: 'fd=9,rootmode=40000,user_id=0,group_id=0,default_permissions,allow_other,subtype=squashfuse_ll',
    });
    expect(fdPassingMount({ program: OVERLAYFS, readOnly: false, noexec: true, allowOther: false, moveInto: { pid: 1 } }, 12, 1000, 100)).to.deep.equal({
      flags: 14,
      data: 'fd=12,rootmode=40000,user_id=1000,group_id=100,default_permissions',
    });
  });
});
