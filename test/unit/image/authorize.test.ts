// authorizedPath / authorizedOwner / authorizedGroup, including Apptainer's regressions.
import { expect } from 'chai';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { init, pathContains, type Image } from '../../../lib';
import { fixture } from '../../support/fixtures';
import { testTmp } from '../../support/hooks';

describe('authorization checks', () => {
  // Layout of Apptainer's TestAuthorizedPath: tmp/foobar/test.sqfs, tmp/foo, tmp/link -> foobar
  const root = path.join(testTmp, 'authz');
  const imageDir = path.join(root, 'foobar');
  const imagePath = path.join(imageDir, 'test.sqfs');
  let img: Image;

  before(async () => {
    fs.mkdirSync(imageDir, { recursive: true });
    fs.mkdirSync(path.join(root, 'foo'));
    fs.symlinkSync('foobar', path.join(root, 'link'));
    fs.copyFileSync(fixture('sq-gzip.sqfs'), imagePath);
    img = await init(imagePath);
  });
  after(() => img.close());

  const pathCases: Array<[string, () => string[], boolean]> = [
    ['empty path', () => [''], false],
    ['a path that does not exist', () => ['/a/random/invalid/path'], false],
    ['/', () => ['/'], true],
    ['the image directory', () => [imageDir], true],
    ['the image directory with a trailing slash', () => [imageDir + '/'], true],
    ['the image file itself', () => [imagePath], true],
    ['a symlink to the image directory', () => [path.join(root, 'link')], true],
    ['a sibling that is a string prefix (foo vs foobar)', () => [path.join(root, 'foo')], false],
    ['a bad path before a good one does not stop the check', () => ['/a/random/invalid/path', imageDir], true],
  ];
  for (const [title, paths, expected] of pathCases) {
    it(`authorizedPath: ${title} -> ${expected}`, async () => {
      expect(await img.authorizedPath(paths())).to.equal(expected);
    });
  }

  it('pathContains is containment, never a prefix', () => {
    expect(pathContains('/data/foo', '/data/foobar/x.sif')).to.equal(false);
    expect(pathContains('/data/foo', '/data/foo/x.sif')).to.equal(true);
    expect(pathContains('/data/foo', '/data/foo')).to.equal(true);
    expect(pathContains('/data/foo', '/data/..foo')).to.equal(false);
    expect(pathContains('/data', '/data/..foo')).to.equal(true);
  });

  it('authorizedOwner: names and numeric uids; unknown names do not stop the check', async () => {
    const me = os.userInfo();
    const uid = fs.statSync(imagePath).uid;
    expect(uid).to.equal(me.uid);
    expect(await img.authorizedOwner([''])).to.equal(false);
    expect(await img.authorizedOwner(['no-such-user-imgmount'])).to.equal(false);
    expect(await img.authorizedOwner([String(uid + 1)])).to.equal(false);
    expect(await img.authorizedOwner([me.username])).to.equal(true);
    expect(await img.authorizedOwner([String(uid)])).to.equal(true);
    expect(await img.authorizedOwner(['no-such-user-imgmount', me.username])).to.equal(true);
    if (uid === 0) expect(await img.authorizedOwner(['nobody'])).to.equal(false);
  });

  it('authorizedGroup: names and numeric gids; "-" and "" do not match', async () => {
    const gid = fs.statSync(imagePath).gid;
    const groupName = fs
      .readFileSync('/etc/group', 'utf8')
      .split('\n')
      .map((l) => l.split(':'))
      .find((f) => f[2] === String(gid))?.[0];
    // The file's group has a name here (/etc/group, read without the library): the name path runs.
    expect(groupName, `a name for gid ${gid} in /etc/group`).to.match(/^[^:\s]+$/);
    expect(await img.authorizedGroup([''])).to.equal(false);
    expect(await img.authorizedGroup(['-'])).to.equal(false);
    expect(await img.authorizedGroup([String(gid)])).to.equal(true);
    expect(await img.authorizedGroup(['-', groupName!])).to.equal(true);
    expect(await img.authorizedGroup(['no-such-group-imgmount'])).to.equal(false);
    expect(await img.authorizedGroup([String(gid + 12345)])).to.equal(false);
  });
});
