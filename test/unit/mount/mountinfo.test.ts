// /proc/<pid>/mountinfo parsing (lib/mount/mountinfo.ts), from fixture text and from this
// process's own mountinfo, read without mounting anything.
import { expect } from 'chai';
import * as fs from 'node:fs';
import { findMounts, parseMountInfo, parseMountInfoLine, readMountInfo, unescapeMountField } from '../../../lib/mount/mountinfo';

const SAMPLE = [
  '36 35 98:0 /mnt1 /mnt/parent\\040dir rw,noatime master:1 - ext3 /dev/root rw,errors=continue',
  '63 43 7:1 / /tmp/a ro,nosuid,nodev,relatime - squashfs /dev/loop1 ro,errors=continue',
  '64 43 7:10 / /tmp/ab ro,nosuid,nodev,relatime shared:5 propagate_from:2 - squashfs /dev/loop10 ro',
  '65 43 0:50 / /tmp/tab\\011and\\012nl\\134 rw - tmpfs my\\040src rw,size=1024k',
].join('\n');

describe('mount/mountinfo: parsing /proc/<pid>/mountinfo', () => {
  it('parses every field, including optional fields and the separator', () => {
    const e = parseMountInfoLine(SAMPLE.split('\n')[0]!)!;
    expect(e).to.deep.equal({
      id: 36,
      parentId: 35,
      major: 98,
      minor: 0,
      root: '/mnt1',
      mountPoint: '/mnt/parent dir',
      mountOptions: ['rw', 'noatime'],
      optionalFields: ['master:1'],
      fstype: 'ext3',
      source: '/dev/root',
      superOptions: ['rw', 'errors=continue'],
    });
    const two = parseMountInfoLine(SAMPLE.split('\n')[2]!)!;
    expect(two.optionalFields).to.deep.equal(['shared:5', 'propagate_from:2']);
    expect(two.fstype).to.equal('squashfs');
  });

  it('a line without optional fields, and a FUSE mount (fstype with a subtype)', () => {
    expect(parseMountInfoLine('120 30 0:61 / /run/r ro,nosuid,nodev,relatime - fuse.squashfuse_ll squashfuse_ll ro,user_id=0,group_id=0')).to.deep.equal({
      id: 120,
      parentId: 30,
      major: 0,
      minor: 61,
      root: '/',
      mountPoint: '/run/r',
      mountOptions: ['ro', 'nosuid', 'nodev', 'relatime'],
      optionalFields: [],
      fstype: 'fuse.squashfuse_ll',
      source: 'squashfuse_ll',
      superOptions: ['ro', 'user_id=0', 'group_id=0'],
    });
  });

  it('unescapes octal escapes (space, tab, newline, backslash)', () => {
    expect(unescapeMountField('a\\040b\\011c\\012d\\134e')).to.equal('a b\tc\nd\\e');
    const e = parseMountInfo(SAMPLE)[3]!;
    expect(e.mountPoint).to.equal('/tmp/tab\tand\nnl\\');
    expect(e.source).to.equal('my src');
    // Only three octal digits make an escape.
    expect(unescapeMountField('a\\04b\\xyz\\0401')).to.equal('a\\04b\\xyz 1');
    expect(unescapeMountField('plain')).to.equal('plain');
  });

  it('matches exact fields, never prefixes (/dev/loop1 vs /dev/loop10, /tmp/a vs /tmp/ab)', () => {
    const all = parseMountInfo(SAMPLE);
    expect(findMounts(all, { source: '/dev/loop1' }).map((e) => e.id)).to.deep.equal([63]);
    expect(findMounts(all, { mountPoint: '/tmp/a' }).map((e) => e.id)).to.deep.equal([63]);
    expect(findMounts(all, { major: 7, minor: 10 }).map((e) => e.id)).to.deep.equal([64]);
    expect(findMounts(all, { mountPoint: '/tmp' })).to.deep.equal([]);
  });

  it('a query needs every field it names; an empty one matches everything', () => {
    const all = parseMountInfo(SAMPLE);
    expect(findMounts(all, { fstype: 'squashfs' }).map((e) => e.id)).to.deep.equal([63, 64]);
    expect(findMounts(all, { fstype: 'squashfs', mountPoint: '/tmp/ab' }).map((e) => e.id)).to.deep.equal([64]);
    expect(findMounts(all, { fstype: 'tmpfs', source: '/dev/loop1' })).to.deep.equal([]);
    expect(findMounts(all, { major: 7 }).map((e) => e.id)).to.deep.equal([63, 64]);
    expect(findMounts(all, {}).map((e) => e.id)).to.deep.equal([36, 63, 64, 65]);
  });

  it('skips malformed lines instead of guessing', () => {
    expect(parseMountInfo('garbage\n1 2 3\n')).to.deep.equal([]);
    // Too few fields, no separator, a separator too early, nothing after it, a bad device number.
    expect(parseMountInfoLine('36 35 98:0 / /mnt rw - ext3')).to.equal(null);
    expect(parseMountInfoLine('36 35 98:0 / /mnt rw master:1 ext3 /dev/root rw')).to.equal(null);
    expect(parseMountInfoLine('36 35 98:0 / - rw x y ext3 /dev/root rw')).to.equal(null);
    expect(parseMountInfoLine('36 35 98:0 / /mnt rw a b c -')).to.equal(null);
    expect(parseMountInfoLine('36 35 98-0 / /mnt rw - ext3 /dev/root rw')).to.equal(null);
    // Blank lines and the trailing newline are not entries; good lines around bad ones are kept.
    expect(parseMountInfo(`\n${SAMPLE.split('\n')[1]}\nbad line\n\n`).map((e) => e.id)).to.deep.equal([63]);
  });

  it("reads this process's own mountinfo: every line, with / and /proc among them", async () => {
    const text = fs.readFileSync('/proc/self/mountinfo', 'utf8');
    const lines = text.split('\n').filter(Boolean);
    const own = await readMountInfo();
    expect(own.length).to.equal(lines.length);
    expect(own.map((e) => e.id)).to.deep.equal(lines.map((l) => Number(l.split(' ')[0])));
    expect(findMounts(own, { mountPoint: '/' }).length).to.be.at.least(1);
    expect(findMounts(own, { mountPoint: '/proc' }).map((e) => e.fstype)).to.include('proc');
    // By pid it is the same table (nothing is mounted or unmounted here meanwhile).
    expect((await readMountInfo(process.pid)).map((e) => e.id)).to.deep.equal(own.map((e) => e.id));
  });

  it('an aborted read rejects with AbortError; a pid that does not exist with ENOENT', async () => {
    const aborted = await readMountInfo('self', { signal: AbortSignal.abort() }).catch((e: unknown) => e);
    expect((aborted as Error).name).to.equal('AbortError');
    const missing = await readMountInfo(2 ** 22 + 1).catch((e: unknown) => e);
    expect((missing as NodeJS.ErrnoException).code).to.equal('ENOENT');
  });
});
