import { expect } from 'chai';
import { getSystemErrorName } from 'node:util';
import { ImgmountError, SystemError, hasErrorCode, AbortError } from '../../../lib/errors';

describe('errors', () => {
  it('SystemError has Node shape: code, negative errno, syscall, path, message', () => {
    const e = new SystemError({ errno: 16, syscall: 'ioctl(LOOP_CONFIGURE)', path: '/dev/loop3' });
    expect(e.code).to.equal('EBUSY');
    expect(e.errno).to.equal(-16);
    expect(getSystemErrorName(e.errno)).to.equal('EBUSY');
    expect(e.syscall).to.equal('ioctl(LOOP_CONFIGURE)');
    expect(e.message).to.match(/^EBUSY: .*, ioctl\(LOOP_CONFIGURE\) '\/dev\/loop3'$/);
    expect(e).to.be.instanceOf(Error);
    expect(e.name).to.equal('SystemError');
  });

  it('hasErrorCode finds a code through any depth of cause', () => {
    const inner = new ImgmountError('ERR_READ_ONLY_FS', 'ro');
    const outer = new Error('outer', { cause: new Error('mid', { cause: inner }) });
    expect(hasErrorCode(outer, 'ERR_READ_ONLY_FS')).to.equal(true);
    expect(hasErrorCode(outer, 'ERR_NO_PARTITION')).to.equal(false);
    expect(hasErrorCode(undefined, 'ERR_READ_ONLY_FS')).to.equal(false);
  });

  it('AbortError matches core fs', () => {
    const e = new AbortError(undefined, { cause: 'why' });
    expect(e.name).to.equal('AbortError');
    expect(e.code).to.equal('ABORT_ERR');
    expect(e.cause).to.equal('why');
  });
});

describe('native addon loading', () => {
  it('a missing addon is one ERR_NATIVE_LOAD error that lists what was tried and how to fix it', () => {
    const { spawnSync } = require('node:child_process') as typeof import('node:child_process');
    const path = require('node:path') as typeof import('node:path');
    const lib = path.join(__dirname, '..', '..', '..', 'lib');
    const script = `const b = require(${JSON.stringify(path.join(lib, 'native', 'binding'))});
      try { b.binding(); console.log('loaded'); } catch (e) { console.log(JSON.stringify({ code: e.code, message: e.message, tried: e.details.tried })); }`;
    const r = spawnSync(process.execPath, ['-e', script], { env: { ...process.env, IMGMOUNT_NATIVE_PATH: '/nonexistent/imgmount.node' }, encoding: 'utf8' });
    const out = JSON.parse(r.stdout) as { code: string; message: string; tried: string[] };
    expect(out.code).to.equal('ERR_NATIVE_LOAD');
    expect(out.tried).to.deep.equal(['/nonexistent/imgmount.node']);
    expect(out.message).to.match(/could not load the imgmount native addon; tried:\n {2}\/nonexistent\/imgmount\.node: Cannot find module '\/nonexistent\/imgmount\.node'\n/);
    expect(out.message).to.include('`npm rebuild imgmount --build-from-source` (needs python3, make and g++)');
    expect(out.message).to.include('point IMGMOUNT_NATIVE_PATH at a built imgmount.node');
  });
});
