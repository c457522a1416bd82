// Unprivileged FUSE for real, not through the `privileged`/`fuseUnprivileged` overrides.
//
// /dev/fuse is 0600 on this machine kind, so a user cannot mount FUSE. In this test's private
// mount namespace a 0666 node (mknod c 10 229 in a tmpfs of our own) is bind-mounted over
// /dev/fuse, and the compiled library runs as nobody (setpriv) in a child process: it must
// choose the FUSE driver for itself (the kernel needs CAP_SYS_ADMIN), have squashfuse mount
// through the setuid fusermount3 (mountinfo: user_id=65534, nosuid, nodev), read the files,
// and release through `fusermount3 -u` (nobody has no other way to unmount), leaving no mount
// and no helper. Before the bind the same child is refused (the real 0600 /dev/fuse).
// Everything nobody touches lives in a world-readable directory outside the 0700 test temp
// dir; the state directory is nobody's own (0700). The bind mount and the tmpfs are undone.
import { expect } from 'chai';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fixture } from '../../support/fixtures';
import { kernelMountsAt } from '../../support/kernel-mountinfo';
import { FILES } from '../../support/images';
import { requireKernel, startChild, type Child } from '../../support/kernel';
import { skip } from '../../support/skip';
import { registerMountPoint } from '../../support/leaks';
import { nobodyView, type NobodyView } from '../../support/nobody-view';

const NOBODY = 65534;
const SETPRIV = ['setpriv', `--reuid=${NOBODY}`, `--regid=${NOBODY}`, '--clear-groups'];

function which(program: string): string | null {
  for (const dir of ['/usr/local/sbin', '/usr/local/bin', '/usr/sbin', '/usr/bin', '/sbin', '/bin']) {
    const p = path.join(dir, program);
    if (fs.existsSync(p)) return p;
  }
  return null;
}

/** The child script as nobody (from the checkout as nobody reaches it), with a fixed environment. */
function asNobody(view: NobodyView, command: Record<string, unknown>, stateDir: string): Child {
  return startChild(command, SETPRIV, {
    script: path.join(view.root, 'dist', 'test', 'support', 'unprivileged-child.js'),
    env: { PATH: '/usr/sbin:/usr/bin:/sbin:/bin', IMGMOUNT_STATE_DIR: stateDir },
    cwd: '/',
  });
}

function processUids(pid: number): number[] {
  const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  return /^Uid:\s+(.*)$/m.exec(status)![1]!.trim().split(/\s+/).map(Number);
}

describe('kernel: unprivileged FUSE, for real (nobody, fusermount3)', function () {
  let work: string;
  let devDir: string;
  let target: string;
  let image: string;
  let stateDir: string;
  let fuseBound = false;
  let tmpfsMounted = false;
  let helperPid = 0;
  let view: NobodyView | undefined;

  before(function () {
    requireKernel(this);
    const missing = ['setpriv', 'fusermount3', 'squashfuse_ll'].filter((p) => !which(p) && !(p === 'squashfuse_ll' && which('squashfuse')));
    if (missing.length || !fs.existsSync('/dev/fuse')) skip(this, missing.length ? `${missing.join(', ')} not installed` : 'no /dev/fuse');
    if ((fs.statSync(which('fusermount3')!).mode & 0o4000) === 0) skip(this, 'fusermount3 is not setuid here');
    view = nobodyView();
    // World-readable (0755), outside the 0700 test temp dir, so nobody can reach it.
    work = fs.mkdtempSync(path.join(os.tmpdir(), 'imgmount-unpriv-'));
    fs.chmodSync(work, 0o755);
    image = path.join(work, 'image.sqfs');
    fs.copyFileSync(fixture('sq-gzip.sqfs'), image);
    fs.chmodSync(image, 0o644);
    target = registerMountPoint(path.join(work, 'mnt'));
    fs.mkdirSync(target);
    fs.chownSync(target, NOBODY, NOBODY); // fusermount3 wants a mount point the user owns
    stateDir = path.join(work, 'state');
    fs.mkdirSync(stateDir, { mode: 0o700 });
    fs.chownSync(stateDir, NOBODY, NOBODY);
    devDir = registerMountPoint(path.join(work, 'dev'));
    fs.mkdirSync(devDir);
  });

  after(() => {
    view?.close();
    if (!work) return;
    const attempt = (fn: () => void): void => {
      try {
        fn();
      } catch (err) {
        console.log(`    (cleanup: ${(err as Error).message})`);
      }
    };
    // Only if the test failed half-way: its mount and helper go too.
    if (kernelMountsAt(target).length) attempt(() => execFileSync('umount', ['-l', target]));
    if (helperPid && fs.existsSync(`/proc/${helperPid}`)) attempt(() => process.kill(helperPid, 'SIGKILL'));
    if (fuseBound) attempt(() => execFileSync('umount', ['/dev/fuse']));
    if (tmpfsMounted) attempt(() => execFileSync('umount', [devDir]));
    attempt(() => fs.rmSync(work, { recursive: true, force: true }));
    expect(fs.statSync('/dev/fuse').mode & 0o777).to.equal(0o600, '/dev/fuse is the real node again');
  });

  it('with the real 0600 /dev/fuse, nobody gets ERR_NO_DRIVER saying why for each driver', async () => {
    expect(fs.statSync('/dev/fuse').mode & 0o777).to.equal(0o600, 'this machine kind has a 0600 /dev/fuse');
    const child = asNobody(view!, { op: 'choose', image }, stateDir);
    const r = await child.next();
    expect(await child.finish()).to.equal(0);
    expect(r.ids).to.deep.equal({ uid: NOBODY, euid: NOBODY, gid: NOBODY, groups: [NOBODY] }); // getgroups() lists the egid
    expect(r.error).to.deep.include({ code: 'ERR_NO_DRIVER' });
    expect((r.error as { message: string }).message).to.equal(
      `no driver can mount squashfs partition "!__rootfs__!" of ${image}: kernel: mounting needs root (CAP_SYS_ADMIN); FUSE: /dev/fuse is not open to unprivileged users here`,
    );
  });

  it('with a 0666 /dev/fuse: chooses FUSE, mounts by squashfuse through fusermount3 as uid 65534, releases with fusermount3 -u', async () => {
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'mode=0755,size=64k', 'imgmount-test-dev', devDir]);
    tmpfsMounted = true;
    execFileSync('mknod', ['-m', '0666', path.join(devDir, 'fuse'), 'c', '10', '229']);
    execFileSync('mount', ['--bind', path.join(devDir, 'fuse'), '/dev/fuse']);
    fuseBound = true;
    const dev = fs.statSync('/dev/fuse');
    expect(dev.mode & 0o777).to.equal(0o666);
    expect([dev.rdev >> 8, dev.rdev & 0xff]).to.deep.equal([10, 229]);

    const chosen = asNobody(view!, { op: 'choose', image }, stateDir);
    const c = await chosen.next();
    expect(await chosen.finish()).to.equal(0);
    expect(c.choice).to.deep.include({ driver: 'fuse', filesystem: 'squashfs' });
    expect((c.choice as { reason: string }).reason).to.match(/^\/usr\/bin\/squashfuse(_ll)? \(FUSE\), since mounting needs root \(CAP_SYS_ADMIN\)$/);

    const child = asNobody(view!, { op: 'root', image, target, file: 'etc/hello.txt' }, stateDir);
    try {
      const m = await child.next();
      expect(m.fatal, JSON.stringify(m)).to.equal(undefined);
      expect(m.content).to.equal(FILES['etc/hello.txt']);
      expect(m.root).to.deep.equal({ path: target, readonly: true });
      const mounts = m.mounts as Array<{ driver: string; fstype: string; readOnly: boolean; helpers: Array<{ program: string; pid: number }> }>;
      expect(mounts).to.have.length(1);
      expect(mounts[0]).to.deep.include({ driver: 'fuse', readOnly: true });
      expect(mounts[0]!.fstype).to.match(/^fuse\.squashfuse(_ll)?$/);
      expect(mounts[0]!.helpers).to.have.length(1);
      helperPid = mounts[0]!.helpers[0]!.pid;

      // What the kernel says, independent of the library: a FUSE mount made for uid 65534
      // (fusermount3 puts user_id/group_id of the real user), nosuid and nodev, read-only.
      const there = kernelMountsAt(target);
      expect(there).to.have.length(1);
      expect(there[0]!.fstype).to.equal(mounts[0]!.fstype);
      expect(there[0]!.mountOptions).to.include.members(['ro', 'nosuid', 'nodev']);
      expect(there[0]!.superOptions).to.include.members(['user_id=65534', 'group_id=65534']);
      // The helper runs as nobody (real, effective, saved, fs uid), and is squashfuse.
      expect(processUids(helperPid)).to.deep.equal([NOBODY, NOBODY, NOBODY, NOBODY]);
      expect(fs.readFileSync(`/proc/${helperPid}/comm`, 'utf8').trim()).to.match(/^squashfuse(_ll)?$/);

      // Its mount record went to nobody's own state directory (0600, nobody's), naming the helper.
      const records = fs.readdirSync(path.join(stateDir, 'mounts'));
      expect(records).to.have.length(1);
      const recordFile = path.join(stateDir, 'mounts', records[0]!);
      const st = fs.statSync(recordFile);
      expect([st.uid, st.mode & 0o777]).to.deep.equal([NOBODY, 0o600]);
      const record = JSON.parse(fs.readFileSync(recordFile, 'utf8')) as { target: string; helpers: Array<{ pid: number }> };
      expect(record.target).to.equal(target);
      expect(record.helpers.map((h) => h.pid)).to.deep.equal([helperPid]);

      // Closing its stdin makes it release and exit.
      expect(await child.finish()).to.equal(0);
      expect(await child.next()).to.deep.equal({ released: true, entries: [] });
    } finally {
      if (child.proc.exitCode === null) child.proc.kill('SIGKILL');
    }
    // nobody cannot umount2(); only fusermount3 -u can have removed it.
    expect(kernelMountsAt(target)).to.deep.equal([]);
    expect(fs.existsSync(`/proc/${helperPid}`)).to.equal(false);
    // The state directory keeps nothing of the released mount.
    expect(fs.readdirSync(stateDir).flatMap((d) => {
      const p = path.join(stateDir, d);
      return fs.statSync(p).isDirectory() ? fs.readdirSync(p).map((e) => `${d}/${e}`) : [d];
    })).to.deep.equal([]);
  });
});
