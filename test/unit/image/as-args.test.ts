// init's `as` and `allowBlockDevice`, and the CLI's `--as UID[:GID]`: argument checking,
// which needs no privilege (every bad value is refused before anything is opened).
import { expect } from 'chai';
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';
import { init, validateCredentials } from '../../../lib';
import { parseAs } from '../../../lib/cli/as';
import { UsageError } from '../../../lib/cli/usage';
import { fixture } from '../../support/fixtures';
import { repoRoot } from '../../support/paths';

async function initRejection(options: Record<string, unknown>): Promise<NodeJS.ErrnoException> {
  try {
    const img = await init(fixture('sq-gzip.sqfs'), false, options);
    await img.close();
  } catch (err) {
    return err as NodeJS.ErrnoException;
  }
  throw new Error(`init(..., ${JSON.stringify(options)}) succeeded but should have been refused`);
}

describe('init: the as and allowBlockDevice arguments', () => {
  const nobody = { uid: 65534, gid: 65534, groups: [] };
  const cases: Array<[string, unknown, string, RegExp]> = [
    ['a string', 'nobody', 'ERR_INVALID_ARG_TYPE', /"options\.as" argument must be an object with uid, gid and groups/],
    ['null', null, 'ERR_INVALID_ARG_TYPE', /"options\.as"/],
    ['an array', [65534, 65534], 'ERR_INVALID_ARG_TYPE', /"options\.as"/],
    ['a string uid', { ...nobody, uid: '65534' }, 'ERR_INVALID_ARG_TYPE', /"options\.as\.uid" argument must be of type number/],
    ['a negative uid', { ...nobody, uid: -1 }, 'ERR_OUT_OF_RANGE', /"options\.as\.uid" is out of range/],
    ['a fractional gid', { ...nobody, gid: 1.5 }, 'ERR_OUT_OF_RANGE', /"options\.as\.gid" is out of range/],
    ['uid (uid_t)-1', { ...nobody, uid: 2 ** 32 - 1 }, 'ERR_OUT_OF_RANGE', /"options\.as\.uid" is out of range. It must be an integer >= 0 && <= 4294967294/],
    ['no gid', { uid: 65534, groups: [] }, 'ERR_INVALID_ARG_TYPE', /"options\.as\.gid"/],
    ['no groups', { uid: 65534, gid: 65534 }, 'ERR_INVALID_ARG_TYPE', /"options\.as\.groups" argument must be an array of group ids/],
    ['a bad group', { ...nobody, groups: [100, -2] }, 'ERR_OUT_OF_RANGE', /"options\.as\.groups\[1\]" is out of range/],
    ['a group that is not a number', { ...nobody, groups: ['users'] }, 'ERR_INVALID_ARG_TYPE', /"options\.as\.groups\[0\]"/],
  ];
  for (const [what, as, code, message] of cases) {
    it(`refuses ${what} with ${code}`, async () => {
      const err = await initRejection({ as });
      expect(err.code).to.equal(code);
      expect(err.message).to.match(message);
    });
  }

  it('refuses a non-boolean allowBlockDevice, with or without as', async () => {
    for (const options of [{ allowBlockDevice: 'yes' }, { as: nobody, allowBlockDevice: 1 }]) {
      const err = await initRejection(options);
      expect(err.code).to.equal('ERR_INVALID_ARG_TYPE');
      expect(err.message).to.match(/"options\.allowBlockDevice" argument must be of type boolean/);
    }
  });

  it('refuses an empty path with as, as without', async () => {
    let err: NodeJS.ErrnoException | undefined;
    try {
      await init('', false, { as: nobody });
    } catch (e) {
      err = e as NodeJS.ErrnoException;
    }
    expect(err?.code).to.equal('ERR_INVALID_ARG_VALUE');
  });

  it('validateCredentials returns a frozen copy the caller cannot change afterwards', () => {
    const groups = [1, 2];
    const c = validateCredentials({ uid: 7, gid: 8, groups, extra: true });
    groups.push(0);
    expect(c).to.deep.equal({ uid: 7, gid: 8, groups: [1, 2] });
    expect(Object.isFrozen(c) && Object.isFrozen(c.groups)).to.equal(true);
  });
});

describe('imgmount --as UID[:GID]', () => {
  const passwd = async (uid: number) => (uid === 1000 ? { gid: 100, groups: [100, 27, 1000] } : null);

  it('takes the group and the supplementary groups from the passwd entry, GID overriding the primary group', async () => {
    expect(await parseAs('1000', passwd)).to.deep.equal({ uid: 1000, gid: 100, groups: [100, 27, 1000] });
    expect(await parseAs('1000:5', passwd)).to.deep.equal({ uid: 1000, gid: 5, groups: [100, 27, 1000] });
    expect(await parseAs(undefined, passwd)).to.equal(undefined);
  });

  it('needs GID for a uid without a passwd entry, and then has no supplementary groups', async () => {
    expect(await parseAs('4242:4243', passwd)).to.deep.equal({ uid: 4242, gid: 4243, groups: [] });
    let err: unknown;
    try {
      await parseAs('4242', passwd);
    } catch (e) {
      err = e;
    }
    expect(err).to.be.instanceOf(UsageError);
    expect((err as Error).message).to.match(/uid 4242 has no passwd entry; give the group too \(--as 4242:GID\)/);
  });

  it('refuses names, signs, empty parts and ids out of range as usage errors', async () => {
    for (const v of ['nobody', '-1', '1000:', ':5', '1000:5:6', '4294967295', '1000:4294967295', '1e3', ' 1000']) {
      let err: unknown;
      try {
        await parseAs(v, passwd);
      } catch (e) {
        err = e;
      }
      expect(err, v).to.be.instanceOf(UsageError);
    }
  });

  it('the commands take --as and report a bad value with status 2 and the usage', () => {
    const bin = path.join(repoRoot, 'bin', 'imgmount.js');
    const badAs = /^imgmount: --as takes UID or UID:GID/;
    const cases: Array<[string[], RegExp]> = [
      [['inspect', '--as', 'nobody', fixture('sq-gzip.sqfs')], badAs],
      [['read', '--as', 'x', fixture('sq-gzip.sqfs'), '--index', '0'], badAs],
      [['mount', '--as', '1:2:3', fixture('sq-gzip.sqfs'), '/nonexistent'], badAs],
      [['root', '--as', '', fixture('sq-gzip.sqfs'), '/nonexistent'], badAs],
      [['inspect', '--allow-block-device', fixture('sq-gzip.sqfs')], /^imgmount: --allow-block-device only applies with --as/],
    ];
    for (const [args, message] of cases) {
      const r = spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8' });
      expect(r.status, `${args.join(' ')}: ${r.stderr}`).to.equal(2);
      expect(r.stderr, args.join(' ')).to.match(message);
      expect(r.stderr).to.match(args[0] === 'root' ? /\nusage: imgmount root \[mount options\]/ : new RegExp(`\\nusage: imgmount ${args[0]} [^]*--as UID\\[:GID\\]`));
    }
  });
});
