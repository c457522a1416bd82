// The README's error table lists exactly the codes the code can throw, and the
// ImgmountErrorCode type exactly the ImgmountError ones.
//
// What "can throw" means here, read from lib/**/*.ts: every quoted 'ERR_…' literal outside
// comments that is not compared against (`=== 'ERR_X'`, `!== 'ERR_X'`, `hasErrorCode(err,
// 'ERR_X')`): the first argument of `new ImgmountError(…)`, a ternary or variable that becomes
// one, a helper's code argument (`fail('ERR_X', …)`, `wrap(…)`, `argumentError(…)`); plus the
// Node-style helpers invalidArgType / invalidArgValue / outOfRange, whose codes are implied.
// lib/errors.ts, which declares the codes and defines the helpers, is not scanned.
import { expect } from 'chai';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { repoRoot } from '../../support/paths';

const libDir = path.join(repoRoot, 'lib');
const ARGUMENT_CODES = ['ERR_INVALID_ARG_TYPE', 'ERR_INVALID_ARG_VALUE', 'ERR_OUT_OF_RANGE'];
const HELPERS: Record<string, string> = { invalidArgType: 'ERR_INVALID_ARG_TYPE', invalidArgValue: 'ERR_INVALID_ARG_VALUE', outOfRange: 'ERR_OUT_OF_RANGE' };

function tsFiles(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name);
    return e.isDirectory() ? tsFiles(p) : e.name.endsWith('.ts') ? [p] : [];
  });
}

/** Comments blanked out (strings are left alone: a `//` inside a quoted string is rare here and harmless). */
function withoutComments(text: string): string {
  return text.replace(/\/\*[\s\S]*?\*\//g, (c) => c.replace(/[^\n]/g, ' ')).replace(/(^|[^:'"`])\/\/.*$/gm, '$1');
}

/** The codes `source` can throw, by the rules in the file comment. */
export function thrownCodes(source: string): Set<string> {
  const text = withoutComments(source);
  const codes = new Set<string>();
  for (const m of text.matchAll(/'(ERR_[A-Z0-9_]+)'/g)) {
    const before = text.slice(Math.max(0, m.index - 80), m.index);
    if (/(===|!==)\s*$/.test(before) || /hasErrorCode\([^()]*,\s*$/.test(before)) continue;
    codes.add(m[1]!);
  }
  for (const [helper, code] of Object.entries(HELPERS)) if (new RegExp(`\\b${helper}\\(`).test(text)) codes.add(code);
  return codes;
}

function codesInLib(): Set<string> {
  const all = new Set<string>();
  // lib/errors.ts declares the codes and defines the helpers; it throws none itself.
  for (const file of tsFiles(libDir).filter((f) => f !== path.join(libDir, 'errors.ts'))) {
    for (const c of thrownCodes(fs.readFileSync(file, 'utf8'))) all.add(c);
  }
  return all;
}

function readmeTableCodes(): string[] {
  const readme = fs.readFileSync(path.join(repoRoot, 'README.md'), 'utf8');
  const section = readme.slice(readme.indexOf('\n## Errors\n'), readme.indexOf('\n## ', readme.indexOf('\n## Errors\n') + 1));
  const rows = section.split('\n').filter((l) => /^\| `ERR_/.test(l));
  return rows.flatMap((r) => [...r.split('|')[1]!.matchAll(/`(ERR_[A-Z0-9_]+)`/g)].map((m) => m[1]!));
}

function unionCodes(name: string): string[] {
  const errors = fs.readFileSync(path.join(libDir, 'errors.ts'), 'utf8');
  const decl = new RegExp(`export type ${name} =([^;]*);`).exec(errors)![1]!;
  return [...decl.matchAll(/'(ERR_[A-Z0-9_]+)'/g)].map((m) => m[1]!);
}

describe('error codes: README and type against the code', () => {
  it('the scan sees a throw, a ternary, a helper and an implied Node-style code, and skips comparisons and comments', () => {
    const sample = `
      throw new ImgmountError('ERR_A', 'x');
      throw new ImgmountError(
        'ERR_B', 'y');
      const code = ok ? 'ERR_C' : 'ERR_D';
      throw fail('ERR_E', 'z');
      if (err.code === 'ERR_NOPE' || hasErrorCode(err, 'ERR_NOPE2')) return;
      // throw new ImgmountError('ERR_COMMENT')
      /** 'ERR_DOC' */
      throw invalidArgType('x', 'a string', 1);`;
    expect([...thrownCodes(sample)].sort()).to.deep.equal(['ERR_A', 'ERR_B', 'ERR_C', 'ERR_D', 'ERR_E', 'ERR_INVALID_ARG_TYPE']);
  });

  it("the README's error table lists exactly the codes lib/ can throw", () => {
    const thrown = [...codesInLib()].sort();
    const documented = readmeTableCodes();
    expect(documented.length, 'a code listed twice').to.equal(new Set(documented).size);
    expect([...documented].sort()).to.deep.equal(thrown);
    // Sanity: the scan is not vacuous.
    expect(thrown).to.include.members(['ERR_NATIVE_LOAD', 'ERR_KEY_REJECTED', 'ERR_LOOP_CLOSED', 'ERR_SIF_TRUNCATED', ...ARGUMENT_CODES]);
  });

  it('ImgmountErrorCode is exactly the thrown codes but the argument ones, which ArgumentErrorCode names', () => {
    const thrown = [...codesInLib()].filter((c) => !ARGUMENT_CODES.includes(c)).sort();
    expect([...unionCodes('ImgmountErrorCode')].sort()).to.deep.equal(thrown);
    expect(unionCodes('ArgumentErrorCode')).to.deep.equal(ARGUMENT_CODES);
  });
});
