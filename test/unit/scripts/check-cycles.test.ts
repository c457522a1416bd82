// The direction of dependencies in lib/ (ARCHITECTURE.md), held by scripts/check-cycles.ts: no
// runtime import cycle between files or between areas, and no area importing one the layering
// table does not allow. The checker is tried on a small tree with known faults first.
import { expect } from 'chai';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ALLOWED, areaOf, checkCycles, cyclesOf, formatReport, runtimeImports } from '../../../scripts/check-cycles';
import { testTmp } from '../../support/hooks';
import { repoRoot } from '../../support/paths';

function tree(name: string, files: Record<string, string>): string {
  const dir = path.join(testTmp, 'cycles', name);
  for (const [rel, text] of Object.entries(files)) {
    fs.mkdirSync(path.dirname(path.join(dir, rel)), { recursive: true });
    fs.writeFileSync(path.join(dir, rel), text);
  }
  return dir;
}

describe('import cycles and layering (scripts/check-cycles)', function () {
  this.timeout(60_000);

  it('counts runtime imports only: type-only imports and import() types are left out, dynamic import(), require and re-exports count', () => {
    const text = [
      "import type { A } from './type-only';",
      "import { type B, type C } from './all-names-typed';",
      "import { type D, e } from './one-name-runtime';",
      "import f from './default';",
      "import * as g from './namespace';",
      "import './side-effect';",
      "export type { H } from './export-type';",
      "export { i } from './re-export';",
      "export * from './star';",
      "import j = require('./import-equals');",
      "let k: import('./type-position').K;",
      "const l = () => import('./dynamic');",
      "const m = require('./require-call');",
      "import { n } from 'node:fs';",
      "import { o } from 'some-package';",
    ].join('\n');
    expect(runtimeImports('x.ts', text).map((i) => i.specifier)).to.deep.equal([
      './one-name-runtime',
      './default',
      './namespace',
      './side-effect',
      './re-export',
      './star',
      './import-equals',
      './dynamic',
      './require-call',
    ]);
    expect(runtimeImports('x.ts', text).map((i) => i.line)).to.deep.equal([3, 4, 5, 6, 8, 9, 10, 12, 13]);
  });

  it('finds cycles of files and of areas, forbidden imports, and says where', () => {
    const dir = tree('faulty', {
      'index.ts': "export * from './image';\nexport * from './root';\n",
      'errors.ts': 'export class E {}\n',
      'image/index.ts': "export { Image } from './image';\n",
      'image/image.ts': "import { root } from '../root/root';\nexport class Image { root = root; }\n",
      'image/init.ts': "import { Image } from './image';\nexport const init = () => new Image();\n",
      'image/types.ts': "import type { Image } from './image';\nexport type T = Image;\n",
      'root/index.ts': "export { root } from './root';\n",
      'root/root.ts': "import { init } from '../image/init';\nimport { E } from '../errors';\nexport const root = () => [init, E];\n",
      'util/a.ts': "import { b } from './b';\nexport const a = () => b;\n",
      'util/b.ts': "export async function b() { return import('./a'); }\n",
      'util/self.ts': "import './self';\n",
      'mystery/x.ts': "import { a } from '../util/a';\nexport const x = a;\n",
    });
    const r = checkCycles(dir);
    expect(r.fileCycles).to.deep.equal([
      ['image/image.ts', 'root/root.ts', 'image/init.ts', 'image/image.ts'],
      ['util/a.ts', 'util/b.ts', 'util/a.ts'],
      ['util/self.ts', 'util/self.ts'],
    ]);
    expect(r.areaCycles).to.deep.equal([['image', 'root', 'image']]);
    expect(r.forbidden).to.deep.equal([
      'image -> root: image/image.ts:1 -> root/root.ts (image may not import root)',
      'mystery -> util: mystery/x.ts:1 -> util/a.ts (area mystery is not in the layering table)',
    ]);
    expect(formatReport(r).trimEnd().split('\n').at(-1)).to.equal('3 file cycles, 1 area cycles, 2 forbidden imports');
    expect(checkCycles(dir, { layers: false }).forbidden).to.deep.equal([]);

    // The command line: the report on stdout and exit status 1.
    const script = path.join(repoRoot, 'dist', 'scripts', 'check-cycles.js');
    const bad = spawnSync(process.execPath, [script, dir], { encoding: 'utf8' });
    expect(bad.status, bad.stderr).to.equal(1);
    expect(bad.stdout).to.include('file cycle: image/image.ts -> root/root.ts -> image/init.ts -> image/image.ts\n');
    expect(bad.stdout).to.include('area cycle: image -> root -> image\n');

    // The same tree with the cycles broken the way lib/ does it passes.
    fs.writeFileSync(path.join(dir, 'image/image.ts'), "import type { root } from '../root/root';\nexport class Image { root?: typeof root; }\n");
    fs.writeFileSync(path.join(dir, 'util/b.ts'), 'export const b = 1;\n');
    fs.writeFileSync(path.join(dir, 'util/self.ts'), 'export {};\n');
    fs.rmSync(path.join(dir, 'mystery'), { recursive: true });
    const good = spawnSync(process.execPath, [script, dir], { encoding: 'utf8' });
    expect(good.stdout).to.equal('0 file cycles, 0 area cycles, 0 forbidden imports\n');
    expect(good.status).to.equal(0);
  });

  it('reports a cycle of every strongly connected group, each once, whatever the order', () => {
    const next = new Map([
      ['a', new Set(['b'])],
      ['b', new Set(['c', 'a'])],
      ['c', new Set(['a', 'd'])],
      ['d', new Set<string>()],
      ['e', new Set(['f'])],
      ['f', new Set(['e'])],
    ]);
    expect(cyclesOf(['f', 'e', 'd', 'c', 'b', 'a'], next)).to.deep.equal([
      ['a', 'b', 'a'],
      ['c', 'a', 'b', 'c'],
      ['e', 'f', 'e'],
    ]);
    expect(cyclesOf(['d'], next)).to.deep.equal([]);
  });

  it('lib/ has no import cycle between files or areas, and every area imports only the areas below it', () => {
    const lib = path.join(repoRoot, 'lib');
    const areas = new Set(fs.readdirSync(lib).map((f) => areaOf(f)).filter((a): a is string => a !== undefined));
    // Every area of lib/ is placed in the table, and the table names no area that is gone.
    expect([...areas].sort()).to.deep.equal(Object.keys(ALLOWED).sort());
    const r = checkCycles(lib);
    expect(formatReport(r)).to.equal('0 file cycles, 0 area cycles, 0 forbidden imports\n');
  });
});
