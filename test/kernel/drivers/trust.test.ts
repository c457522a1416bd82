// Forged state and untrusted configuration, with real mounts: a record whose helper pid is some
// other program, or that names mounts outside its target or session directories, releases
// nothing it should not; IMGMOUNT_HELPER_PATH is honoured as root only for a file nobody else
// can write; the FUSE driver finds its programs in the system directories whatever PATH says,
// and starts them with a fixed environment.
import { expect } from 'chai';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { kernelMountFunc } from '../../../lib/drivers/kernel';
import { currentMountNamespace, findMountRecord, mountRecordFile, processStartTime, saveMountRecord, sessionsDir, stateKey, thisOwner, type HelperRecord, type MountRecord } from '../../../lib/drivers/mount-record';
import { FuseDriver, resetFuseBinaries, type FuseMountParams } from '../../../lib/drivers/fuse';
import { SYSTEM_PATH } from '../../../lib/drivers/fuse/binaries';
import { MS_NODEV, MS_NOSUID, MS_RDONLY, mount, umount } from '../../../lib/mount';
import { createUserNamespace, spawnInNamespaces } from '../../../lib/ns';
import { releaseMount } from '../../../lib/root/release';
import { readOutput } from '../../../lib/util/child-exit';
import { killSleepers, rejection, restoreEnv, running, scratchDir as mkdir, scratchPath, setEnv, sleeper } from '../../support/forgery';
import { mountDir, testImages } from '../../support/images';
import { requireKernel, requireUserNamespaces } from '../../support/kernel';
import { mountPoints, registerMountPoint } from '../../support/leaks';
import { repoRoot } from '../../support/paths';

const RO = MS_RDONLY | MS_NOSUID | MS_NODEV;
const MAP = { uidMap: [{ inside: 0, outside: 100000, count: 65536 }], gidMap: [{ inside: 0, outside: 200000, count: 65536 }] };
async function tmpfs(dir: string): Promise<string> {
  registerMountPoint(dir);
  await mount('tmpfs', dir, 'tmpfs', MS_NOSUID | MS_NODEV, 'size=1m');
  return dir;
}

describe('kernel: forged state and untrusted configuration', function () {
  const mounted: string[] = [];
  let mntns: string;

  function recordFor(target: string, helpers: HelperRecord[], more: Partial<MountRecord> = {}): MountRecord {
    return { target, mntns, driver: 'fuse', fstype: 'fuse.squashfuse_ll', helpers, internalMounts: [], created: new Date().toISOString(), ...more };
  }

  before(async function () {
    requireKernel(this);
    mntns = await currentMountNamespace();
  });

  beforeEach(() => {
    setEnv('IMGMOUNT_STATE_DIR', scratchPath('trust-state'));
  });

  afterEach(async () => {
    for (const m of mounted.splice(0).reverse()) if (mountPoints().includes(m)) await umount(m, 0);
    await killSleepers();
    restoreEnv();
    resetFuseBinaries();
  });

  describe('records', () => {
    it('releaseMount unmounts the target of a record whose helper pid is another program (same start time), and does not signal it', async () => {
      const target = await tmpfs(fs.realpathSync(mountDir('trust-exe')));
      mounted.push(target);
      const { child, helper } = await sleeper();
      await saveMountRecord(recordFor(target, [{ ...helper, exe: '/usr/bin/squashfuse_ll' }]));
      await releaseMount(target);
      expect(mountPoints()).to.not.include(target);
      expect(running(child.pid!), 'the sleep whose pid and start time the record names').to.equal(true);
      expect(await findMountRecord(target)).to.equal(undefined);
    });

    it('a record with a nested mount outside the target (a string-prefix sibling) is ERR_MOUNT_RECORD_INVALID: nothing unmounted', async () => {
      const target = await tmpfs(fs.realpathSync(mountDir('trust-nested')));
      const sibling = registerMountPoint(`${target}2`);
      fs.mkdirSync(sibling);
      await tmpfs(sibling);
      mounted.push(target, sibling);
      const { child, helper } = await sleeper();
      await fs.promises.writeFile(await mountRecordFile(target), JSON.stringify(recordFor(target, [helper], { nestedMounts: [sibling] })), { mode: 0o600 });
      const err = await rejection(releaseMount(target));
      expect(err.code).to.equal('ERR_MOUNT_RECORD_INVALID');
      expect(err.message).to.include(`nestedMounts[0] (${sibling}) is not inside the target ${target}`);
      expect(mountPoints()).to.include.members([target, sibling]);
      expect(running(child.pid!)).to.equal(true);
    });

    it('a record with a session directory outside <state>/sessions is ERR_MOUNT_RECORD_INVALID: its mounts and files stay', async () => {
      const target = await tmpfs(fs.realpathSync(mountDir('trust-session')));
      const outside = mkdir(0o755, 'outside-session');
      fs.writeFileSync(path.join(outside, 'keep'), 'x');
      const inner = path.join(outside, 'lower');
      fs.mkdirSync(inner);
      await tmpfs(inner);
      mounted.push(target, inner);
      await fs.promises.writeFile(
        await mountRecordFile(target),
        JSON.stringify(recordFor(target, [], { sessionDir: outside, internalMounts: [inner] })),
        { mode: 0o600 },
      );
      const err = await rejection(releaseMount(target));
      expect(err.code).to.equal('ERR_MOUNT_RECORD_INVALID');
      expect(err.message).to.include(`sessionDir (${outside}) is not a directory directly under ${await sessionsDir()}`);
      expect(mountPoints()).to.include.members([target, inner]);
      expect(fs.readdirSync(outside).sort()).to.deep.equal(['keep', 'lower']);
    });
  });

  describe('IMGMOUNT_HELPER_PATH', () => {
    const helper = path.join(repoRoot, 'build', 'Release', 'imgmount-nsenter');

    it('as root, a helper others can write is ERR_UNSAFE_OVERRIDE and is not run; a root-owned 0755 copy is', async function () {
      requireUserNamespaces(this);
      const dir = mkdir(0o755, 'helper');
      // 0777: runnable, so only the check stands between it and root.
      const unsafe = path.join(dir, 'unsafe-nsenter');
      fs.copyFileSync(helper, unsafe);
      fs.chmodSync(unsafe, 0o777);
      setEnv('IMGMOUNT_HELPER_PATH', unsafe);
      const err = await rejection(createUserNamespace(MAP));
      expect(err.code).to.equal('ERR_UNSAFE_OVERRIDE');
      expect(err.message).to.include(`IMGMOUNT_HELPER_PATH names ${unsafe}`);
      expect(err.message).to.include(`${unsafe} is writable by others (mode 0777)`);
      const safe = path.join(dir, 'safe-nsenter');
      fs.copyFileSync(helper, safe);
      fs.chmodSync(safe, 0o755);
      setEnv('IMGMOUNT_HELPER_PATH', safe);
      await using userns = await createUserNamespace(MAP);
      const { code, stdout } = await readOutput(await spawnInNamespaces({ userns }, '/bin/cat', ['/proc/self/uid_map']));
      expect(code).to.equal(0);
      expect(stdout.trim().split(/\s+/)).to.deep.equal(['0', '100000', '65536']);
    });
  });

  describe('FUSE helper programs', () => {
    const params = (p: Partial<FuseMountParams> & Pick<FuseMountParams, 'target'>): FuseMountParams => ({
      source: testImages().squashfs,
      filesystem: 'squashfs',
      flags: RO,
      offset: 0,
      size: 0,
      fsOptions: [],
      ...p,
    });

    it('a fake squashfuse_ll first in PATH is not run: the system one serves, and the record holds its executable', async () => {
      const dir = mkdir(0o755, 'fake-path');
      const marker = path.join(dir, 'ran');
      for (const name of ['squashfuse_ll', 'squashfuse', 'setsid']) fs.writeFileSync(path.join(dir, name), `#!/bin/sh\ntouch ${marker}\nexit 1\n`, { mode: 0o755 });
      setEnv('PATH', `${dir}:${process.env.PATH ?? ''}`);
      resetFuseBinaries();
      const d = new FuseDriver();
      await d.start({ sessionPath: '', usernsFd: -1, fuseFd: -1 });
      try {
        const t = registerMountPoint(fs.realpathSync(mountDir('trust-path')));
        const m = await d.mount(params({ target: t }), kernelMountFunc);
        try {
          expect(fs.existsSync(marker), 'the fake ran').to.equal(false);
          const exe = fs.readlinkSync(`/proc/${m.helpers[0]!.pid}/exe`);
          expect(SYSTEM_PATH.split(':')).to.include(path.dirname(exe));
          expect(path.basename(exe)).to.equal('squashfuse_ll');
          expect(fs.readFileSync(path.join(t, 'etc/hello.txt'), 'utf8')).to.equal('hello from imgmount\n');
          expect((await findMountRecord(t))?.helpers).to.deep.equal([
            { program: 'squashfuse_ll', pid: m.helpers[0]!.pid, startTime: await processStartTime(m.helpers[0]!.pid), exe },
          ]);
        } finally {
          await m.close();
        }
      } finally {
        await d.stop('');
      }
    });

    it("a helper's environment is fixed: PATH of the system directories, LC_ALL=C, nothing of the caller's", async () => {
      const dir = mkdir(0o755, 'env-helper');
      const out = path.join(dir, 'environ');
      const fake = path.join(dir, 'squashfuse_ll');
      fs.writeFileSync(fake, `#!/bin/sh\ncat /proc/$$/environ > ${out}\nexit 1\n`, { mode: 0o755 });
      setEnv('PATH', `${dir}:${process.env.PATH ?? ''}`);
      setEnv('FOO', 'bar');
      setEnv('LANG', 'xx_XX.UTF-8');
      setEnv('TZ', 'Pacific/Chatham');
      setEnv('LD_PRELOAD', path.join(dir, 'nonexistent.so'));
      const d = new FuseDriver({ programs: { squashfuse: fake }, fdPassing: false });
      await d.start({ sessionPath: '', usernsFd: -1, fuseFd: -1 });
      try {
        const t = registerMountPoint(mountDir('trust-env'));
        const err = await rejection(d.mount(params({ target: t, timeoutMs: 5000 }), kernelMountFunc));
        expect(err.code).to.equal('ERR_HELPER_FAILED');
      } finally {
        await d.stop('');
      }
      // Plus the mark of the record owner it serves (this process), which cleanup() looks for.
      const me = await thisOwner();
      expect(fs.readFileSync(out, 'utf8').split('\0').filter(Boolean).sort()).to.deep.equal([`IMGMOUNT_OWNER=${me.pid}:${me.startTime}:${await stateKey()}`, 'LC_ALL=C', `PATH=${SYSTEM_PATH}`]);
    });
  });
});
