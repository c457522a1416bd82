// Mount records and the state directory against forgery: an untrusted state directory, record
// files that are symlinks or not ours, records outside the schema or naming paths outside
// where imgmount puts things, and recorded pids that are not the helper any more. Nothing here
// mounts: what must hold is that nothing is acted on (a live `sleep` named in a record survives).
import { expect } from 'chai';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import * as fs from 'node:fs';
import * as path from 'node:path';
import {
  currentMountNamespace,
  ensureStateDir,
  findMountRecord,
  mountRecordFile,
  removeSessionDir,
  saveMountRecord,
  sessionsDir,
  type HelperRecord,
  type MountRecord,
} from '../../../lib/drivers/mount-record';
import { releaseMountRecord, stopRecordedHelpers } from '../../../lib/drivers/fuse/release';
import { releaseMount } from '../../../lib/root/release';
import { killSleepers, rejection, restoreEnv, running, scratchDir as mkdir, scratchPath as fresh, setEnv, sleeper } from '../../support/forgery';
import { repoRoot } from '../../support/paths';
import { skip } from '../../support/skip';

const isRoot = process.geteuid?.() === 0;

function recordFor(target: string, mntns: string, helpers: HelperRecord[], more: Partial<MountRecord> = {}): MountRecord {
  return { target, mntns, driver: 'fuse', fstype: 'fuse.squashfuse_ll', helpers, internalMounts: [], created: new Date().toISOString(), ...more };
}

/** Writes `content` (JSON unless a string) as the record file of `target`, bypassing saveMountRecord's checks. */
async function plant(target: string, content: unknown, mode = 0o600): Promise<string> {
  const file = await mountRecordFile(target);
  fs.writeFileSync(file, typeof content === 'string' ? content : JSON.stringify(content));
  fs.chmodSync(file, mode);
  return file;
}

describe('mount records and the state directory', () => {
  let mntns: string;

  before(async () => {
    mntns = await currentMountNamespace();
  });

  beforeEach(() => setEnv('IMGMOUNT_STATE_DIR', fresh('state')));

  afterEach(async () => {
    restoreEnv();
    await killSleepers();
  });

  describe('the state directory', () => {
    it('is created 0755 (missing parents too) when missing, checked, and used by its resolved path; sessions/ is 0700', async () => {
      const parent = mkdir(0o755, 'parent');
      fs.symlinkSync(parent, `${parent}-link`);
      setEnv('IMGMOUNT_STATE_DIR', path.join(`${parent}-link`, 'a', 'state'));
      const dir = await ensureStateDir();
      expect(dir).to.equal(path.join(parent, 'a', 'state'));
      expect(fs.statSync(dir).mode & 0o7777).to.equal(0o755);
      expect(fs.statSync(path.join(parent, 'a')).mode & 0o7777).to.equal(0o755);
      const sessions = await sessionsDir();
      expect(sessions).to.equal(path.join(dir, 'sessions'));
      expect(fs.statSync(sessions).mode & 0o7777).to.equal(0o700);
    });

    it('a world-writable one is ERR_UNSAFE_STATE_DIR for writing, reading and session directories, and nothing is created in it', async () => {
      const open = mkdir(0o777, 'open-state');
      setEnv('IMGMOUNT_STATE_DIR', open);
      const target = mkdir(0o755, 'target');
      for (const attempt of [() => saveMountRecord(recordFor(target, mntns, [])), () => findMountRecord(target), sessionsDir, ensureStateDir]) {
        const err = await rejection(attempt());
        expect(err.code).to.equal('ERR_UNSAFE_STATE_DIR');
        expect(err.message).to.include(`${open} is writable by others (mode 0777)`);
        expect(err.message).to.include('IMGMOUNT_STATE_DIR');
      }
      expect(fs.readdirSync(open)).to.deep.equal([]);
    });

    it('so is one below a world-writable directory, and one owned by another user (root: chown)', async function () {
      const open = mkdir(0o777, 'open-parent');
      setEnv('IMGMOUNT_STATE_DIR', path.join(open, 'state'));
      const err = await rejection(ensureStateDir());
      expect(err.code).to.equal('ERR_UNSAFE_STATE_DIR');
      expect(err.message).to.include(`${open} is writable by others (mode 0777)`);
      if (!isRoot) {
        console.log('    (rest skipped: needs root to chown the state directory to another uid)');
        return;
      }
      const theirs = mkdir(0o755, 'their-state');
      fs.chownSync(theirs, 4242, 4242);
      setEnv('IMGMOUNT_STATE_DIR', theirs);
      const err2 = await rejection(ensureStateDir());
      expect(err2.code).to.equal('ERR_UNSAFE_STATE_DIR');
      expect(err2.message).to.include(`${theirs} is owned by uid 4242`);
    });

    it('a forged record in a world-writable state directory: releaseMount and `imgmount umount` refuse it, the process it names lives', async () => {
      const open = mkdir(0o777, 'open-state');
      fs.mkdirSync(path.join(open, 'mounts'), { mode: 0o777 });
      fs.chmodSync(path.join(open, 'mounts'), 0o777);
      setEnv('IMGMOUNT_STATE_DIR', open);
      const target = fs.realpathSync(mkdir(0o755, 'target'));
      // What anyone could write there: a well-formed record naming a live, unrelated process.
      const { child, helper } = await sleeper();
      const name = createHash('sha256').update(`${mntns}\0${target}`).digest('hex').slice(0, 32);
      fs.writeFileSync(path.join(open, 'mounts', `${name}.json`), JSON.stringify(recordFor(target, mntns, [helper])), { mode: 0o666 });
      const err = await rejection(releaseMount(target));
      expect(err.code).to.equal('ERR_UNSAFE_STATE_DIR');
      expect(err.message).to.include(`${open} is writable by others (mode 0777)`);
      const cli = spawnSync(process.execPath, [path.join(repoRoot, 'bin', 'imgmount.js'), 'umount', target], {
        env: { ...process.env, IMGMOUNT_STATE_DIR: open },
        encoding: 'utf8',
        timeout: 20_000,
      });
      expect(cli.status, cli.stderr).to.equal(1);
      expect(cli.stderr).to.match(/^imgmount: the state directory .* cannot hold mount records: .* is writable by others \(mode 0777\)/);
      expect(running(child.pid!), 'the sleep named in the forged record').to.equal(true);
    });
  });

  describe('record files', () => {
    it('are written 0600 through a temp file that does not stay, and read back', async () => {
      const target = mkdir(0o755, 'target');
      const { helper } = await sleeper();
      const record = recordFor(target, mntns, [helper]);
      await saveMountRecord(record);
      const file = await mountRecordFile(target);
      expect(fs.readdirSync(path.dirname(file))).to.deep.equal([path.basename(file)]);
      expect(fs.lstatSync(file).mode & 0o7777).to.equal(0o600);
      expect(await findMountRecord(target)).to.deep.equal(record);
    });

    it('a record that is a symlink is ERR_MOUNT_RECORD_INVALID, and nothing in it is acted on', async () => {
      const target = mkdir(0o755, 'target');
      const { child, helper } = await sleeper();
      const elsewhere = path.join(mkdir(0o755, 'elsewhere'), 'record.json');
      fs.writeFileSync(elsewhere, JSON.stringify(recordFor(target, mntns, [helper])), { mode: 0o600 });
      const file = await mountRecordFile(target);
      fs.symlinkSync(elsewhere, file);
      const err = await rejection(findMountRecord(target));
      expect(err.code).to.equal('ERR_MOUNT_RECORD_INVALID');
      expect(err.message).to.include(file);
      expect(err.message).to.include('symbolic link');
      expect((await rejection(releaseMount(target))).code).to.equal('ERR_MOUNT_RECORD_INVALID');
      expect(running(child.pid!)).to.equal(true);
    });

    it('a record writable by others, too large, not JSON, or not a regular file is refused', async () => {
      const target = mkdir(0o755, 'target');
      const good = recordFor(target, mntns, []);
      const cases: Array<[() => Promise<unknown>, RegExp]> = [
        [() => plant(target, good, 0o666), /writable by group or others \(mode 0666\)/],
        [() => plant(target, good, 0o620), /writable by group or others \(mode 0620\)/],
        [() => plant(target, JSON.stringify({ ...good, pad: 'x'.repeat(70_000) })), /bytes \(at most 65536\)/],
        [() => plant(target, '{"target": '), /not JSON/],
        [async () => fs.mkdirSync(await mountRecordFile(target)), /not a regular file/],
      ];
      for (const [make, reason] of cases) {
        const file = await mountRecordFile(target);
        fs.rmSync(file, { recursive: true, force: true });
        await make();
        const err = await rejection(findMountRecord(target));
        expect(err.code).to.equal('ERR_MOUNT_RECORD_INVALID');
        expect(err.message).to.match(reason);
      }
    });

    it('a record file owned by another user is refused (root: chown)', async function () {
      if (!isRoot) {
        skip(this, 'not running as root (needs root to chown the record to another uid)');
      }
      const target = mkdir(0o755, 'target');
      const file = await plant(target, recordFor(target, mntns, []));
      fs.chownSync(file, 4242, 4242);
      const err = await rejection(findMountRecord(target));
      expect(err.code).to.equal('ERR_MOUNT_RECORD_INVALID');
      expect(err.message).to.include('owned by uid 4242');
    });

    it("a record copied to another target's (or namespace's) name is refused", async () => {
      const a = mkdir(0o755, 'target-a');
      const b = mkdir(0o755, 'target-b');
      await saveMountRecord(recordFor(a, mntns, []));
      fs.copyFileSync(await mountRecordFile(a), await mountRecordFile(b));
      const err = await rejection(findMountRecord(b));
      expect(err.code).to.equal('ERR_MOUNT_RECORD_INVALID');
      expect(err.message).to.include(`it is for target ${a}, not ${b}`);
      fs.copyFileSync(await mountRecordFile(a), await mountRecordFile(a, '4026531999'));
      expect((await rejection(findMountRecord(a, '4026531999'))).message).to.include(`it is for mount namespace ${mntns}, not 4026531999`);
    });
  });

  describe('the record schema', () => {
    it('refuses wrong types and paths outside the target, the session directories or <state>/sessions', async () => {
      const target = fs.realpathSync(mkdir(0o755, 'target'));
      const sessions = await sessionsDir();
      const session = fs.mkdtempSync(path.join(sessions, 'root-'));
      const { helper } = await sleeper();
      const base = recordFor(target, mntns, [helper], { sessionDir: session });
      const cases: Array<[Record<string, unknown> | unknown[], RegExp]> = [
        [{ ...base, nestedMounts: ['/etc'] }, /nestedMounts\[0\] \(\/etc\) is not inside the target/],
        [{ ...base, nestedMounts: [`${target}2`] }, /nestedMounts\[0\] .* is not inside the target/], // a string prefix is not containment
        [{ ...base, nestedMounts: [target] }, /nestedMounts\[0\] .* is not inside the target/],
        [{ ...base, nestedMounts: [`${target}/../../etc`] }, /nestedMounts\[0\] is not an absolute normalised path/],
        [{ ...base, nestedMounts: 'x' }, /nestedMounts is not an array/],
        [{ ...base, sessionDir: '/tmp' }, /sessionDir \(\/tmp\) is not a directory directly under/],
        [{ ...base, sessionDir: path.join(session, 'deeper') }, /sessionDir .* is not a directory directly under/],
        [{ ...base, sessionDir: `${sessions}/../mounts` }, /sessionDir is not an absolute normalised path/],
        [{ ...base, moreSessionDirs: ['/var/tmp'] }, /moreSessionDirs\[0\] \(\/var\/tmp\) is not a directory directly under/],
        [{ ...base, internalMounts: ['/etc'] }, /internalMounts\[0\] \(\/etc\) is not inside the record's session directories/],
        [{ ...base, internalMounts: [session] }, /internalMounts\[0\] .* is not inside the record's session directories/],
        [{ ...base, sessionDir: undefined, internalMounts: [path.join(session, 'lower')] }, /internalMounts\[0\] .* session directories \(none\)/],
        [{ ...base, helpers: [{ ...helper, pid: 0 }] }, /helpers\[0\]\.pid is not a positive integer/],
        [{ ...base, helpers: [{ ...helper, pid: -1 }] }, /helpers\[0\]\.pid is not a positive integer/],
        [{ ...base, helpers: [{ ...helper, pid: String(helper.pid) }] }, /helpers\[0\]\.pid is not a positive integer/],
        [{ ...base, helpers: [{ ...helper, startTime: 'x1' }] }, /helpers\[0\]\.startTime is not a string of digits/],
        [{ ...base, helpers: [{ ...helper, startTime: 12 }] }, /helpers\[0\]\.startTime is not a string of digits/],
        [{ ...base, helpers: [{ ...helper, program: '../../bin/sh' }] }, /helpers\[0\]\.program is not a plain program name/],
        [{ ...base, helpers: [{ ...helper, exe: 'sleep' }] }, /helpers\[0\]\.exe is not an absolute normalised path/],
        [{ ...base, helpers: {} }, /helpers is not an array/],
        [{ ...base, target: 'relative/target' }, /target is not an absolute normalised path/],
        [{ ...base, driver: 'evil' }, /driver is not/],
        [{ ...base, created: undefined }, /created is not a string/],
        [{ ...base, internalMounts: undefined }, /internalMounts is not an array/],
        [{ ...base, persist: 'yes' }, /persist is not a boolean/],
        [[base], /not a JSON object/],
      ];
      for (const [content, reason] of cases) {
        await plant(target, content);
        const err = await rejection(findMountRecord(target));
        expect(err.code, String(reason)).to.equal('ERR_MOUNT_RECORD_INVALID');
        expect(err.message).to.match(reason);
      }
      // The valid base record is accepted (so each case failed for its own reason); unknown fields are dropped.
      await plant(target, { ...base, evil: 'x', helpers: [{ ...helper, evil: 'y' }] });
      expect(await findMountRecord(target)).to.deep.equal(base);
    });

    it('saveMountRecord refuses a record it could not read back, and writes nothing', async () => {
      const target = mkdir(0o755, 'target');
      const err = await rejection(saveMountRecord(recordFor(target, mntns, [], { nestedMounts: ['/etc'] })));
      expect(err.code).to.equal('ERR_MOUNT_RECORD_INVALID');
      expect(fs.readdirSync(path.dirname(await mountRecordFile(target)))).to.deep.equal([]);
    });

    it('releaseMountRecord checks a record handed to it directly, and acts on nothing in a bad one', async () => {
      const target = mkdir(0o755, 'target');
      const outside = mkdir(0o755, 'outside');
      fs.writeFileSync(path.join(outside, 'keep'), 'x');
      const { child, helper } = await sleeper();
      const err = await rejection(releaseMountRecord(recordFor(target, mntns, [helper], { sessionDir: outside }), { stop: { graceMs: 10, termMs: 10, killMs: 10 } }));
      expect(err.code).to.equal('ERR_MOUNT_RECORD_INVALID');
      expect(running(child.pid!)).to.equal(true);
      expect(fs.readdirSync(outside)).to.deep.equal(['keep']);
    });
  });

  describe('session directories', () => {
    it('removeSessionDir removes one directly under <state>/sessions, and refuses anything else', async () => {
      const sessions = await sessionsDir();
      const outside = mkdir(0o755, 'not-a-session');
      fs.writeFileSync(path.join(outside, 'keep'), 'x');
      const nested = fs.mkdtempSync(path.join(sessions, 'root-'));
      fs.mkdirSync(path.join(nested, 'deeper'));
      const link = path.join(sessions, 'link');
      fs.symlinkSync(outside, link);
      for (const [dir, reason] of [
        [outside, /session directories are directly under/],
        [path.join(nested, 'deeper'), /session directories are directly under/],
        [link, /not a directory/],
      ] as const) {
        const err = await rejection(removeSessionDir(dir));
        expect(err.code).to.equal('ERR_INVALID_ARG_VALUE');
        expect(err.message).to.match(reason);
      }
      expect(fs.readdirSync(outside)).to.deep.equal(['keep']);
      await removeSessionDir(nested);
      expect(fs.existsSync(nested)).to.equal(false);
    });
  });

  describe('recorded helpers', () => {
    const quick = { stop: { graceMs: 20, termMs: 2000, killMs: 2000 } };

    it('a pid whose start time matches but whose executable is not the recorded one is not signalled', async () => {
      const { child, helper } = await sleeper();
      await stopRecordedHelpers([{ ...helper, exe: '/usr/bin/squashfuse_ll' }], quick);
      expect(running(child.pid!)).to.equal(true);
    });

    it('a helper recorded without its executable is never signalled: the release says so', async () => {
      const { child, helper } = await sleeper();
      const { exe: _exe, ...noExe } = helper;
      const err = await rejection(stopRecordedHelpers([noExe], quick));
      expect(err.code).to.equal('ERR_HELPER_FAILED');
      expect(err.message).to.match(/names no executable, so it is not signalled/);
      expect(running(child.pid!)).to.equal(true);
    });

    it('the recorded executable and start time stop it, even when its file was replaced since (" (deleted)")', async () => {
      const copy = path.join(mkdir(0o755, 'bin'), 'sleep-copy');
      fs.copyFileSync(fs.realpathSync('/bin/sleep'), copy);
      fs.chmodSync(copy, 0o755);
      const a = await sleeper();
      const b = await sleeper(copy);
      expect(b.helper.exe).to.equal(copy);
      fs.unlinkSync(copy);
      expect(fs.readlinkSync(`/proc/${b.child.pid}/exe`)).to.equal(`${copy} (deleted)`);
      const exits = [once(a.child, 'exit'), once(b.child, 'exit')];
      await stopRecordedHelpers([a.helper, b.helper], quick);
      await Promise.all(exits);
      expect(running(a.child.pid!)).to.equal(false);
      expect(running(b.child.pid!)).to.equal(false);
    });
  });
});
