// The imgmount command line, run as a user would: the bin script in a child process.
import { expect } from 'chai';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fixture } from '../support/fixtures';
import { repoRoot, sifFixturesDir } from '../support/paths';

const bin = path.join(repoRoot, 'bin', 'imgmount.js');
const busybox = path.join(sifFixturesDir, 'apptainer', 'busybox_amd64.sif');

function imgmount(...args: string[]) {
  const r = spawnSync(process.execPath, [bin, ...args], { maxBuffer: 64 * 1024 * 1024 });
  return { status: r.status, stdout: r.stdout, text: r.stdout.toString(), stderr: r.stderr.toString() };
}

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

describe('imgmount CLI', () => {
  it('inspect prints type, partitions with filesystem details, and sections', () => {
    const r = imgmount('inspect', busybox);
    expect(r.status).to.equal(0);
    expect(r.text).to.contain('type:     SIF (0x1003)');
    expect(r.text).to.match(/4\s+!__rootfs__!\s+squashfs\s+45056\s+745472\s+rootfs\s+squashfs 4\.0, gzip/);
    expect(r.text).to.match(/3\s+oci-config\.json\s+JSON\.Generic\s+40960\s+90/);
  });

  it('inspect --json prints the Apptainer-compatible Image JSON', () => {
    const r = imgmount('inspect', '--json', fixture('hdr-lf.sqfs'));
    expect(r.status).to.equal(0);
    const j = JSON.parse(r.text);
    expect(j.type).to.equal(0x1000);
    expect(j.partitions[0]).to.include({ name: '!__rootfs__!', offset: 31, allowed_usage: 7 });
    expect(j.path).to.equal(fs.realpathSync(fixture('hdr-lf.sqfs')));
  });

  it('inspect shows warnings and ext3 geometry', () => {
    const r = imgmount('inspect', fixture('sif-overlay-othergroup.sif'));
    expect(r.text).to.match(/warnings:\n\s+overlay partition 2 \("overlay"\) is in group 2/);
    expect(imgmount('inspect', fixture('ext3.img')).text).to.match(/ext3, 2048 blocks of 1024, label "imgmount"/);
  });

  it('inspect --writable on squashfs fails with the read-only message', () => {
    const r = imgmount('inspect', '--writable', fixture('sq-gzip.sqfs'));
    expect(r.status).to.equal(1);
    expect(r.stderr).to.match(/^imgmount: could not set .* image writable: squashfs is a read-only filesystem\n$/);
  });

  it('read writes exactly the bytes of a partition, by name or index, and of a section', () => {
    const whole = fs.readFileSync(busybox);
    const byIndex = imgmount('read', busybox, '--index', '0');
    expect(byIndex.status).to.equal(0);
    expect(sha(byIndex.stdout)).to.equal(sha(whole.subarray(45056, 45056 + 745472)));
    const byName = imgmount('read', busybox, '--partition', '!__rootfs__!');
    expect(sha(byName.stdout)).to.equal(sha(byIndex.stdout));
    const section = imgmount('read', busybox, '--section', 'oci-config.json');
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
