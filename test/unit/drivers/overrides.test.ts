// Environment overrides and program lookup in a privileged process: IMGMOUNT_NATIVE_PATH and
// IMGMOUNT_FUSE_PATH are honoured as root only when what they name passes the trust check;
// helper programs are never looked up through PATH; the probe that runs them gets a fixed
// environment. (IMGMOUNT_HELPER_PATH runs a program: see test/kernel/drivers/trust.test.ts.)
import { expect } from 'chai';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { ImgmountError } from '../../../lib/errors';
import { FuseDriver, locateFuseBinaries, resetFuseBinaries, squashfuseOwnerOptions } from '../../../lib/drivers/fuse';
import { SYSTEM_PATH } from '../../../lib/drivers/fuse/binaries';
import { restoreEnv, scratchDir as mkdir, setEnv } from '../../support/forgery';
import { repoRoot } from '../../support/paths';
import { skip } from '../../support/skip';

const isRoot = process.geteuid?.() === 0;

function script(dir: string, name: string, body: string, mode = 0o755): string {
  const file = path.join(dir, name);
  fs.writeFileSync(file, `#!/bin/sh\n${body}\n`);
  fs.chmodSync(file, mode);
  return file;
}

function requireRoot(ctx: Mocha.Context): void {
  if (!isRoot) {
    skip(ctx, 'not running as root (overrides are checked only when the effective uid is 0)');
  }
}

function environOf(file: string): string[] {
  return fs.readFileSync(file, 'utf8').split('\0').filter(Boolean).sort();
}

describe('environment overrides and program lookup', () => {
  beforeEach(() => resetFuseBinaries());
  afterEach(() => {
    restoreEnv();
    resetFuseBinaries();
  });

  describe('IMGMOUNT_NATIVE_PATH', () => {
    const addon = path.join(repoRoot, 'build', 'Release', 'imgmount.node');
    const load = (file: string) => {
      const lib = path.join(repoRoot, 'dist', 'lib', 'native', 'binding');
      const code = `const b = require(${JSON.stringify(lib)});
        try { b.binding(); console.log(JSON.stringify({ loaded: true })); } catch (e) { console.log(JSON.stringify({ code: e.code, message: e.message, details: e.details })); }`;
      const r = spawnSync(process.execPath, ['-e', code], { env: { ...process.env, IMGMOUNT_NATIVE_PATH: file }, encoding: 'utf8' });
      return JSON.parse(r.stdout) as { loaded?: boolean; code?: string; message?: string; details?: { variable: string; reason: string } };
    };

    it('as root, an addon others can write is ERR_UNSAFE_OVERRIDE (not loaded); a root-owned 0755 copy loads', function () {
      requireRoot(this);
      const dir = mkdir(0o755, 'addon');
      const unsafe = path.join(dir, 'unsafe.node');
      fs.copyFileSync(addon, unsafe);
      fs.chmodSync(unsafe, 0o666);
      const out = load(unsafe);
      expect(out.code).to.equal('ERR_UNSAFE_OVERRIDE');
      expect(out.message).to.include(`IMGMOUNT_NATIVE_PATH names ${unsafe}`);
      expect(out.details).to.deep.equal({ variable: 'IMGMOUNT_NATIVE_PATH', reason: `${unsafe} is writable by others (mode 0666)` });
      const safe = path.join(dir, 'safe.node');
      fs.copyFileSync(addon, safe);
      fs.chmodSync(safe, 0o755);
      expect(load(safe)).to.deep.equal({ loaded: true });
    });
  });

  describe('IMGMOUNT_FUSE_PATH', () => {
    it('as root, a directory others can write is ERR_UNSAFE_OVERRIDE when programs are looked up (not at construction)', function () {
      requireRoot(this);
      const dir = mkdir(0o777, 'fuse-path');
      script(dir, 'squashfuse_ll', 'exit 0');
      setEnv('IMGMOUNT_FUSE_PATH', dir);
      let err: ImgmountError | undefined;
      try {
        locateFuseBinaries();
      } catch (e) {
        err = e as ImgmountError;
      }
      expect(err?.code).to.equal('ERR_UNSAFE_OVERRIDE');
      expect(err?.message).to.include(`IMGMOUNT_FUSE_PATH names ${dir}`);
      expect(err?.message).to.include(`${dir} is writable by others (mode 0777)`);
      const d = new FuseDriver();
      expect(() => d.features()).to.throw(/IMGMOUNT_FUSE_PATH/);
    });

    it('a root-owned directory others cannot write is honoured', function () {
      requireRoot(this);
      const dir = mkdir(0o755, 'fuse-path');
      const fake = script(dir, 'squashfuse_ll', 'exit 0');
      setEnv('IMGMOUNT_FUSE_PATH', dir);
      expect(locateFuseBinaries().squashfuse).to.equal(fake);
    });
  });

  describe('program lookup', () => {
    it('a squashfuse_ll first in PATH is not used: only the system directories are searched', () => {
      const dir = mkdir(0o755, 'path-first');
      const fakes = ['squashfuse_ll', 'squashfuse', 'fuse2fs'].map((p) => script(dir, p, 'exit 0'));
      setEnv('PATH', `${dir}:.:${process.env.PATH ?? ''}`);
      const found = locateFuseBinaries();
      expect(found.searched).to.deep.equal(SYSTEM_PATH.split(':'));
      // What a shell finds with only the system directories on PATH (scripts/setup-host.sh
      // installs both): the same programs, never the fakes.
      const systemOne = (name: string) => spawnSync('sh', ['-c', `command -v ${name}`], { env: { PATH: SYSTEM_PATH }, encoding: 'utf8' }).stdout.trim();
      expect([found.squashfuse, found.fuse2fs]).to.deep.equal([systemOne('squashfuse_ll'), systemOne('fuse2fs')]);
      for (const p of [found.squashfuse!, found.fuse2fs!]) {
        expect(fakes).to.not.include(p);
        expect(SYSTEM_PATH.split(':')).to.include(path.dirname(p));
      }
    });

    it('explicit programs and binaryPath are still honoured', () => {
      const dir = mkdir(0o755, 'explicit');
      const fake = script(dir, 'squashfuse_ll', 'exit 0');
      expect(locateFuseBinaries({ programs: { squashfuse: fake } }).squashfuse).to.equal(fake);
      expect(locateFuseBinaries({ binaryPath: dir }).squashfuse).to.equal(fake);
    });

    it("the usage probe runs the program with a fixed environment: nothing of the caller's", async () => {
      const dir = mkdir(0o755, 'probe');
      const out = path.join(dir, 'environ');
      const fake = script(dir, 'squashfuse_ll', `cat /proc/$$/environ > ${out}\necho "usage: -o uid=N"`);
      setEnv('PATH', `${dir}:${process.env.PATH ?? ''}`);
      setEnv('FOO', 'bar');
      setEnv('LANG', 'xx_XX.UTF-8');
      setEnv('LD_LIBRARY_PATH', dir);
      expect(await squashfuseOwnerOptions(fake)).to.equal(true);
      expect(environOf(out)).to.deep.equal(['LC_ALL=C', `PATH=${SYSTEM_PATH}`]);
    });
  });
});
