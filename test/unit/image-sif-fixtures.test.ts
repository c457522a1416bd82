// init() over the 23 real SIF images in ../shared/fixtures/sif, read in place. What each
// image should yield is derived from the table in that folder's README (objects, types,
// groups), mapped by Apptainer's rules: the PrimSys partition is the root filesystem,
// Data/Overlay partitions are partitions, System partitions are ignored, every other object
// is a section.
import { expect } from 'chai';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ImgmountError, RootFs, RootFsUsage, SIF, SQUASHFS, archRunnable, init } from '../../lib';
import { openFds } from '../support/fds';
import { sifFixturesDir } from '../support/paths';

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
// README, "Objects that are not what their type suggests": in the legacy images the
// "Squashfs" primary partition is the 4 bytes de ad be ef, so the root header check fails.
const fakeSquashfs = (file: string) => file.includes('signed-legacy');

describe('init over the real SIF fixtures', () => {
  it('the README table lists all 23 images', () => {
    expect(rows).to.have.length(23);
  });

  for (const row of rows) {
    const file = path.join(sifFixturesDir, row.file);
    it(`${row.file}: as the README describes`, async () => {
      expect(fs.statSync(file).size).to.equal(row.size);
      const primary = row.objects.find((o) => o.kind === 'FS' && o.detail.includes('/*System/'));
      const arch = primary ? /\/\*System\/(\w+)/.exec(primary.detail)![1]! : 'unknown';
      if (primary && fakeSquashfs(row.file)) {
        let err: ImgmountError | undefined;
        try {
          await init(file);
        } catch (e) {
          err = e as ImgmountError;
        }
        expect(err?.code).to.equal('ERR_PARTITION_INVALID');
        expect(err?.message).to.match(new RegExp(`partition ${primary.id} .*squashfs.*hsqs`));
        return;
      }
      if (!(await archRunnable(arch))) {
        let err: ImgmountError | undefined;
        try {
          await init(file);
        } catch (e) {
          err = e as ImgmountError;
        }
        expect(err?.code).to.equal('ERR_ARCH_MISMATCH');
        expect(err?.message).to.match(new RegExp(`architecture \\(${arch}\\) could not run on the host's`));
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
      if (primary) {
        expect(img.partitions).to.have.length(1);
        const p = img.partitions[0]!;
        expect(p).to.deep.include({ name: RootFs, id: primary.id, type: SQUASHFS, allowedUsage: RootFsUsage });
        expect(p.offset + p.size).to.be.at.most(row.size);
      } else {
        expect(img.partitions).to.deep.equal([]);
      }
      expect(img.warnings).to.deep.equal([]);
    });
  }

  it('busybox_amd64.sif: offsets, sizes and names of everything', async function () {
    if (!(await archRunnable('amd64'))) {
      console.log('      (skip: this host cannot run amd64 images)');
      this.skip();
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

  it('leaves no fd open whatever the outcome', async () => {
    const before = openFds();
    for (const row of rows) {
      try {
        await (await init(path.join(sifFixturesDir, row.file))).close();
      } catch {
        // expected for some
      }
    }
    expect(openFds()).to.deep.equal(before);
  });
});
