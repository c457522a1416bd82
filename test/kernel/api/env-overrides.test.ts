// Environment overrides whose effect had no test:
//  - IMGMOUNT_HELPER_PATH: the namespace helper actually run is the program it names (a
//    root-owned wrapper that logs each run and execs the real helper), and without it the
//    built one runs again;
//  - IMGMOUNT_KERNEL_SQUASHFS_COMP: the squashfs compressions the kernel is taken to read,
//    which moves a squashfs the kernel would mount to squashfuse (and says why).
import { expect } from 'chai';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { init } from '../../../lib';
import { chooseDriver, kernelSquashfsCompressions } from '../../../lib/drivers';
import { createUserNamespace, spawnInNamespaces } from '../../../lib/ns';
import { mountImage } from '../../../lib/root';
import { readOutput } from '../../../lib/util/child-exit';
import { fixture } from '../../support/fixtures';
import { restoreEnv, scratchDir, setEnv } from '../../support/forgery';
import { FILES, mountDir } from '../../support/images';
import { requireKernel, requireUserNamespaces } from '../../support/kernel';
import { kernelMountsAt } from '../../support/kernel-mountinfo';
import { boundLoops, registerMountPoint } from '../../support/leaks';
import { repoRoot } from '../../support/paths';

const MAP = { uidMap: [{ inside: 0, outside: 100000, count: 65536 }], gidMap: [{ inside: 0, outside: 200000, count: 65536 }] };

describe('kernel: environment overrides', function () {
  before(function () {
    requireKernel(this);
  });
  afterEach(() => restoreEnv());

  it('IMGMOUNT_HELPER_PATH: the program it names is the one run for namespace work; unset, the built helper runs', async function () {
    requireUserNamespaces(this);
    const real = path.join(repoRoot, 'build', 'Release', 'imgmount-nsenter');
    const dir = scratchDir(0o755, 'helper-override');
    const log = path.join(dir, 'runs.log');
    const wrapper = path.join(dir, 'logging-nsenter');
    fs.writeFileSync(wrapper, `#!/bin/sh\necho "$*" >> ${log}\nexec ${real} "$@"\n`, { mode: 0o755 });
    fs.chmodSync(wrapper, 0o755); // root-owned, written by nobody else: trusted as root
    setEnv('IMGMOUNT_HELPER_PATH', wrapper);

    await using userns = await createUserNamespace(MAP);
    const afterCreate = fs.readFileSync(log, 'utf8').split('\n').filter(Boolean);
    expect(afterCreate.length).to.be.greaterThan(0); // making the namespace went through the wrapper
    const { code, stdout } = await readOutput(await spawnInNamespaces({ userns }, '/bin/cat', ['/proc/self/uid_map']));
    expect(code).to.equal(0);
    expect(stdout.trim().split(/\s+/)).to.deep.equal(['0', '100000', '65536']); // the real helper did the work
    const afterSpawn = fs.readFileSync(log, 'utf8').split('\n').filter(Boolean);
    expect(afterSpawn.length).to.equal(afterCreate.length + 1);
    expect(afterSpawn[afterSpawn.length - 1]).to.match(/\/bin\/cat/); // it was asked to run cat

    restoreEnv();
    expect(process.env.IMGMOUNT_HELPER_PATH).to.equal(undefined);
    const again = await readOutput(await spawnInNamespaces({ userns }, '/bin/cat', ['/proc/self/uid_map']));
    expect(again.code).to.equal(0);
    expect(fs.readFileSync(log, 'utf8').split('\n').filter(Boolean)).to.deep.equal(afterSpawn); // not through the wrapper
  });

  it('IMGMOUNT_KERNEL_SQUASHFS_COMP without gzip: a trusted gzip squashfs goes to squashfuse, saying why; unset, to the kernel', async () => {
    await using img = await init(fixture('sq-gzip.sqfs'));
    const part = img.getRootFsPartition();
    expect((await chooseDriver(img, part, { trusted: true })).driver).to.equal('kernel');

    setEnv('IMGMOUNT_KERNEL_SQUASHFS_COMP', 'xz, zstd');
    expect(await kernelSquashfsCompressions()).to.deep.equal({ compressions: ['xz', 'zstd'], source: 'IMGMOUNT_KERNEL_SQUASHFS_COMP' });
    const choice = await chooseDriver(img, part, { trusted: true });
    expect(choice.driver).to.equal('fuse');
    expect(choice.reason).to.match(/^\/usr\/bin\/squashfuse(_ll)? \(FUSE\), since the kernel's squashfs cannot decompress gzip \(it reads xz, zstd\)$/);
    const forced = await chooseDriver(img, part, { driver: 'kernel' }).catch((e: unknown) => e);
    expect((forced as { code: string }).code).to.equal('ERR_NO_DRIVER');
    expect((forced as Error).message).to.match(/cannot decompress gzip \(it reads xz, zstd\)$/);

    const dir = registerMountPoint(mountDir('env-comp'));
    const m = await mountImage(img, dir, { trusted: true });
    try {
      expect(m.driver).to.equal('fuse');
      expect(kernelMountsAt(dir).map((e) => e.fstype)).to.deep.equal(['fuse.squashfuse_ll']);
      expect(fs.readFileSync(path.join(dir, 'etc/hello.txt'), 'utf8')).to.equal(FILES['etc/hello.txt']);
      expect(boundLoops().filter((l) => l.backingFile === fixture('sq-gzip.sqfs'))).to.deep.equal([]); // no loop device: not the kernel
    } finally {
      await m.close();
    }
    expect(kernelMountsAt(dir)).to.deep.equal([]);
    restoreEnv();
    expect((await kernelSquashfsCompressions()).compressions).to.include('gzip'); // this kernel's own configuration
    expect((await chooseDriver(img, part, { trusted: true })).driver).to.equal('kernel');
  });
});
