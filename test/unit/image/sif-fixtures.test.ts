// init() over the 23 real SIF images in ../shared/fixtures/sif, read in place. What each
// image should yield is derived from the table in that folder's README (objects, types,
// groups), mapped by Apptainer's rules: the PrimSys partition is the root filesystem,
// Data/Overlay partitions are partitions, System partitions are ignored, every other object
// is a section.
import { expect } from 'chai';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ImgmountError, RootFs, RootFsUsage, SIF, SQUASHFS, init } from '../../../lib';
import { openFds } from '../../support/fds';
import { HOST_ARCH, emulatorsSkipReason, expectedRunnable } from '../../support/host';
import { sifFixturesDir } from '../../support/paths';
import { skip } from '../../support/skip';
import { parseDump } from '../sif/helpers';

interface TableRow {
  file: string;
  size: number;
  objects: Array<{ id: number; kind: string; detail: string }>;
}

function readTable(): TableRow[] {
  const readme = fs.readFileSync(path.join(sifFixturesDir, 'README.md'), 'utf8');
  const rows: TableRow[] = [];
  for (const line of readme.split('\n')) {
    const m = /^\| `([^`]+\.sif)` \| (\d+) \| `[0-9a-f]{64}` \|[^|]*\|[^|]*\|[^|]*\|[^|]*\| (.*) \|$/.exec(line);
    if (!m) continue;
    const objects =
      m[3] === '(none)'
        ? []
        : m[3]!.split('; ').map((o) => {
            const om = /^(\d+):(\S+)\s*(.*)$/.exec(o)!;
            return { id: Number(om[1]), kind: om[2]!, detail: om[3]! };
          });
    rows.push({ file: m[1]!, size: Number(m[2]), objects });
  }
  return rows;
}

const rows = readTable();
const dump = parseDump(fs.readFileSync(path.join(sifFixturesDir, 'parser-output.txt'), 'utf8'));
// README, "Objects that are not what their type suggests": in the legacy images the
// "Squashfs" primary partition is the 4 bytes de ad be ef, so the root header check fails.
const fakeSquashfs = (file: string) => file.includes('signed-legacy');

/** The primary partition (FS .../*System/<arch>) of a README row, and its architecture. */
function primaryOf(row: TableRow): { id: number; arch: string } | undefined {
  const o = row.objects.find((x) => x.kind === 'FS' && x.detail.includes('/*System/'));
  return o && { id: o.id, arch: /\/\*System\/(\w+)/.exec(o.detail)![1]! };
}

/**
 * What init() must do with a README row on this host: 'load', or the error code and message.
 * Facts only: the README's objects, and whether this host runs the primary partition's
 * architecture by process.arch (test/support/host.ts), never by archRunnable().
 */
function expectedOutcome(row: TableRow): { load: true } | { load: false; code: string; message: RegExp } | { skip: string } {
  const primary = primaryOf(row);
  if (primary && fakeSquashfs(row.file)) return { load: false, code: 'ERR_PARTITION_INVALID', message: new RegExp(`partition ${primary.id} .*squashfs.*hsqs`) };
  const arch = primary?.arch ?? 'unknown';
  const runs = expectedRunnable(arch);
  if (runs === undefined) return { skip: emulatorsSkipReason(arch) };
  if (runs) return { load: true };
  return { load: false, code: 'ERR_ARCH_MISMATCH', message: new RegExp(`^the image's architecture \\(${arch}\\) could not run on the host's \\(${HOST_ARCH}\\)$`) };
}

/** init(file) closed again: the image's type, or the error. */
async function outcomeOf(file: string): Promise<{ type: number } | { error: ImgmountError }> {
  try {
    const img = await init(file);
    await img.close();
    return { type: img.type };
  } catch (e) {
    return { error: e as ImgmountError };
  }
}

describe('init over the real SIF fixtures', () => {
  it('the README table lists all 23 images', () => {
    expect(rows).to.have.length(23);
  });

  for (const row of rows) {
    const file = path.join(sifFixturesDir, row.file);
    it(`${row.file}: as the README describes`, async function () {
      expect(fs.statSync(file).size).to.equal(row.size);
      const want = expectedOutcome(row);
      if ('skip' in want) {
        skip(this, want.skip);
      }
      if (!want.load) {
        const got = await outcomeOf(file);
        expect('error' in got, `init(${row.file}) should fail with ${want.code}`).to.equal(true);
        const err = (got as { error: ImgmountError }).error;
        expect(err.code).to.equal(want.code);
        expect(err.message).to.match(want.message);
        return;
      }
      await using img = await init(file);
      expect(img.type).to.equal(SIF);
      const expectedSections = row.objects.filter((o) => o.kind !== 'FS');
      expect(img.sections.map((s) => s.id)).to.deep.equal(expectedSections.map((o) => o.id));
      for (const s of img.sections) {
        const o = expectedSections.find((x) => x.id === s.id)!;
        const named = /"([^"]+)"/.exec(o.detail)?.[1] ?? '';
        expect(s.name).to.equal(named);
      }
      const primary = primaryOf(row);
      if (primary) {
        expect(img.partitions).to.have.length(1);
        const p = img.partitions[0]!;
        expect(p).to.deep.include({ name: RootFs, id: primary.id, type: SQUASHFS, allowedUsage: RootFsUsage });
        // Where the independent parser found that object (parser-output.txt).
        const slot = dump.find((d) => d.file === path.basename(row.file))!.slots.find((x) => x.id === primary.id)!;
        expect([p.offset, p.size]).to.deep.equal([slot.offset, slot.size]);
        expect(p.offset + p.size).to.be.at.most(row.size);
      } else {
        expect(img.partitions).to.deep.equal([]);
      }
      expect(img.warnings).to.deep.equal([]);
    });
  }

  it('busybox_amd64.sif: offsets, sizes and names of everything (parser-output.txt)', async function () {
    if (expectedRunnable('amd64') !== true) {
      skip(this, `this ${HOST_ARCH} host does not run amd64 images${expectedRunnable('amd64') === undefined ? `; ${emulatorsSkipReason('amd64')}` : ''}`);
    }
    await using img = await init(path.join(sifFixturesDir, 'apptainer', 'busybox_amd64.sif'));
    expect(img.partitions).to.deep.equal([{ name: RootFs, size: 745472, offset: 45056, id: 4, type: SQUASHFS, allowedUsage: 1 }]);
    expect(img.sections.map((s) => [s.id, s.name, s.type, s.offset, s.size])).to.deep.equal([
      [1, '.', 0x4001, 32768, 39],
      [2, 'inspect-metadata.json', 0x4006, 36864, 1896],
      [3, 'oci-config.json', 0x4006, 40960, 90],
      [5, '.', 0x4005, 790528, 1765],
    ]);
  });

  it('leaves no fd open whatever the outcome, and each outcome is the README\'s', async function () {
    const before = openFds();
    let checked = 0;
    for (const row of rows) {
      const want = expectedOutcome(row);
      const got = await outcomeOf(path.join(sifFixturesDir, row.file));
      if ('skip' in want) continue;
      if (want.load) expect(got, row.file).to.deep.equal({ type: SIF });
      else expect('error' in got && got.error.code, row.file).to.equal(want.code);
      checked++;
    }
    expect(openFds()).to.deep.equal(before);
    if (checked < rows.length) console.log(`      (${rows.length - checked} outcomes not checked: ${emulatorsSkipReason('foreign')})`);
  });
});
