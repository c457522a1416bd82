// The imgmount command line, run as a user would: the bin script in a child process.
import { expect } from 'chai';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fixture } from '../../support/fixtures';
import { dumpe2fsFacts, unsquashfsFacts } from '../../support/fs-tools';
import { repoRoot, sifFixturesDir } from '../../support/paths';
import { parseDump, type DumpSlot } from '../sif/helpers';

const bin = path.join(repoRoot, 'bin', 'imgmount.js');
const busybox = path.join(sifFixturesDir, 'apptainer', 'busybox_amd64.sif');

// Offsets and sizes come from the independent parser's dump (shared/fixtures/sif/parser-output.txt),
// never from imgmount: object 4 is the squashfs root, object 3 the OCI config.
const busyboxDump = parseDump(fs.readFileSync(path.join(sifFixturesDir, 'parser-output.txt'), 'utf8')).find((d) => d.file === 'busybox_amd64.sif')!;
const object = (id: number): DumpSlot => busyboxDump.slots.find((s) => s.id === id)!;
const rootfs = object(4);
const ociConfig = object(3);

function imgmount(...args: string[]) {
  const r = spawnSync(process.execPath, [bin, ...args], { maxBuffer: 64 * 1024 * 1024 });
  return { status: r.status, stdout: r.stdout, text: r.stdout.toString(), stderr: r.stderr.toString() };
}

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

describe('imgmount CLI', () => {
  it('inspect prints type, partitions with filesystem details, and sections', () => {
    expect([rootfs.offset, rootfs.size, ociConfig.offset, ociConfig.size]).to.deep.equal([45056, 745472, 40960, 90]); // the dump as read
    const sq = unsquashfsFacts(busybox, rootfs.offset);
    const r = imgmount('inspect', busybox);
    expect(r.status).to.equal(0);
    expect(r.text).to.contain('type:     SIF (0x1003)');
    expect(r.text).to.match(new RegExp(`\\n {4}4\\s+!__rootfs__!\\s+squashfs\\s+${rootfs.offset}\\s+${rootfs.size}\\s+rootfs\\s+squashfs ${sq.major}\\.${sq.minor}, ${sq.compression}\\n`));
    expect(r.text).to.match(new RegExp(`\\n {4}3\\s+oci-config\\.json\\s+JSON\\.Generic\\s+${ociConfig.offset}\\s+${ociConfig.size}\\n`));
  });

  it('inspect --json prints the Apptainer-compatible Image JSON', () => {
    const r = imgmount('inspect', '--json', fixture('hdr-lf.sqfs'));
    expect(r.status).to.equal(0);
    const j = JSON.parse(r.text);
    expect(j.type).to.equal(0x1000);
    // The squashfs starts after the launch line "#!/usr/bin/env run-singularity\n" (31 bytes).
    const header = '#!/usr/bin/env run-singularity\n';
    expect(fs.readFileSync(fixture('hdr-lf.sqfs')).subarray(0, header.length).toString('latin1')).to.equal(header);
    expect(j.partitions).to.deep.equal([
      { name: '!__rootfs__!', size: fs.statSync(fixture('hdr-lf.sqfs')).size - header.length, offset: header.length, id: 1, type: 0x1000, allowed_usage: 7 },
    ]);
    expect(j.path).to.equal(fs.realpathSync(fixture('hdr-lf.sqfs')));
  });

  it('inspect shows warnings and ext3 geometry (as dumpe2fs -h reads it)', () => {
    const r = imgmount('inspect', fixture('sif-overlay-othergroup.sif'));
    expect(r.text).to.match(/warnings:\n\s+overlay partition 2 \("overlay"\) is in group 2/);
    const ext = dumpe2fsFacts(fixture('ext3.img'));
    expect(imgmount('inspect', fixture('ext3.img')).text).to.contain(`ext3, ${ext.blockCount} blocks of ${ext.blockSize}, label "${ext.label}"\n`);
  });

  it('inspect --json adds what the human output shows: warnings, and each filesystem\'s superblock facts', () => {
    const sif = fixture('sif-overlay-othergroup.sif');
    const j = JSON.parse(imgmount('inspect', '--json', sif).text);
    const human = imgmount('inspect', sif).text;
    expect(j.warnings).to.deep.equal(['overlay partition 2 ("overlay") is in group 2, not the root filesystem\'s group 1; skipped']);
    expect(human).to.contain(`warnings:\n    ${j.warnings[0]}\n`);
    // The Image JSON's own keys come first and unchanged (Apptainer's parser ignores the two extra ones).
    expect(Object.keys(j)).to.deep.equal(['partitions', 'sections', 'path', 'name', 'source', 'type', 'fd', 'writable', 'usage', 'warnings', 'filesystems']);
    const sq = unsquashfsFacts(sif, j.partitions[0].offset);
    expect(j.filesystems).to.have.length(1);
    expect(j.filesystems[0]).to.deep.include({ id: j.partitions[0].id });
    expect(j.filesystems[0].squashfs).to.deep.include({ major: sq.major, minor: sq.minor, compression: sq.compression });
    const ext = dumpe2fsFacts(fixture('ext3.img'));
    const e = JSON.parse(imgmount('inspect', '--json', fixture('ext3.img')).text);
    expect(e.warnings).to.deep.equal([]);
    expect(e.filesystems).to.have.length(1);
    expect(e.filesystems[0].ext3).to.deep.include({ blocksCount: ext.blockCount, blockSize: ext.blockSize, label: ext.label });
  });

  it('--version prints the package version', () => {
    const r = imgmount('--version');
    expect(r.status).to.equal(0);
    expect(r.text).to.equal(`${(JSON.parse(fs.readFileSync(path.join(repoRoot, 'package.json'), 'utf8')) as { version: string }).version}\n`);
    expect(imgmount('--help').text).to.contain('imgmount --version');
  });

  it('inspect --writable on squashfs fails with the read-only message', () => {
    const r = imgmount('inspect', '--writable', fixture('sq-gzip.sqfs'));
    expect(r.status).to.equal(1);
    expect(r.stderr).to.match(/^imgmount: could not set .* image writable: squashfs is a read-only filesystem\n$/);
  });

  it('read writes exactly the bytes of a partition, by name or index, and of a section', () => {
    const whole = fs.readFileSync(busybox);
    const rootBytes = whole.subarray(rootfs.offset, rootfs.offset + rootfs.size);
    expect(sha(rootBytes).slice(0, rootfs.dataSha256Prefix.length)).to.equal(rootfs.dataSha256Prefix);
    const byIndex = imgmount('read', busybox, '--index', '0');
    expect(byIndex.status).to.equal(0);
    expect(byIndex.stdout.length).to.equal(rootfs.size);
    expect(sha(byIndex.stdout)).to.equal(sha(rootBytes));
    const byName = imgmount('read', busybox, '--partition', '!__rootfs__!');
    expect(byName.status).to.equal(0);
    expect(sha(byName.stdout)).to.equal(sha(rootBytes));
    const section = imgmount('read', busybox, '--section', 'oci-config.json');
    expect(section.status).to.equal(0);
    expect(section.stdout.equals(whole.subarray(ociConfig.offset, ociConfig.offset + ociConfig.size))).to.equal(true);
    expect(JSON.parse(section.text).Cmd).to.deep.equal(['sh']);
  });

  it('errors go to stderr as "imgmount: <message>" with a nonzero status', () => {
    const missing = imgmount('inspect', '/nonexistent/image.sif');
    expect(missing.status).to.equal(1);
    expect(missing.stderr).to.match(/^imgmount: failed to retrieve path for \/nonexistent\/image\.sif: ENOENT/);
    const unknown = imgmount('inspect', fixture('vfat.img'));
    expect(unknown.stderr).to.match(/^imgmount: image format not recognized: .*\n  sandbox: not a directory\n/);
    const noSection = imgmount('read', busybox, '--section', 'nope');
    expect(noSection.status).to.equal(1);
    expect(noSection.stderr).to.equal('imgmount: no section named "nope" found\n');
    expect(noSection.stdout.length).to.equal(0);
  });

  it('usage mistakes exit 2 with the usage line', () => {
    const r = imgmount('read', busybox);
    expect(r.status).to.equal(2);
    expect(r.stderr).to.match(/give exactly one of --partition NAME, --section NAME or --index N\nusage: imgmount read/);
    expect(imgmount('inspect').status).to.equal(2);
    expect(imgmount('inspect', '--bogus', busybox).status).to.equal(2);
    expect(imgmount('frobnicate').stderr).to.match(/unknown command "frobnicate"/);
    expect(imgmount().status).to.equal(2);
    expect(imgmount('--help').status).to.equal(0);
  });

  it('mount --kernel-extfs with --no-kernel-extfs is a usage mistake; the help names the parser options', () => {
    const r = imgmount('mount', '--kernel-extfs', '--no-kernel-extfs', fixture('ext3.img'), '/nonexistent-target');
    expect(r.status).to.equal(2);
    expect(r.stderr).to.match(/^imgmount: --kernel-extfs and --no-kernel-extfs contradict each other\nusage: imgmount mount/);
    const help = imgmount('mount', '--help').text;
    expect(help).to.match(/\[--trusted\] \[--kernel-extfs\]/);
    expect(help).to.match(/CVE-2023-30549/);
  });
});
