// The suite's last line and exit status (test/support/summary-reporter.js) and the one way to
// skip (test/support/skip.ts): mocha runs tiny spec files in a child process, and the real
// kernel specs run where they cannot (as nobody, or unprivileged), under CI=true.
import { expect } from 'chai';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { testTmp } from '../../support/hooks';
import { repoRoot } from '../../support/paths';
import { CI_ALLOWED_SKIP_REASONS, ciAllowsSkip } from '../../support/skip';
import { nobodyView } from '../../support/nobody-view';

const mochaBin = path.join(repoRoot, 'node_modules', 'mocha', 'bin', 'mocha.js');
const reporter = path.join(repoRoot, 'test', 'support', 'summary-reporter.js');
const skipModule = path.join(repoRoot, 'dist', 'test', 'support', 'skip.js');

let n = 0;

/** Writes spec files (name -> body) under a fresh <dir>/test/{kernel,unit}/ tree; returns their paths. */
function specs(files: Record<string, string>): string[] {
  const dir = path.join(testTmp, `reporter-${n++}`);
  return Object.entries(files).map(([name, body]) => {
    const file = path.join(dir, 'test', name);
    fs.mkdirSync(path.dirname(file), { recursive: true });
    fs.writeFileSync(file, `const { skip } = require(${JSON.stringify(skipModule)});\n${body}\n`);
    return file;
  });
}

interface Run {
  status: number | null;
  stdout: string;
  lastLine: string;
}

function env(ci: string | undefined): NodeJS.ProcessEnv {
  const e = { ...process.env };
  delete e.CI;
  if (ci !== undefined) e.CI = ci;
  return e;
}

/** Runs mocha with the summary reporter on `files` (no .mocharc, no root hooks). */
function mocha(files: string[], ci?: string): Run {
  const r = spawnSync(process.execPath, [mochaBin, '--no-config', '--reporter', reporter, ...files], { env: env(ci), encoding: 'utf8', cwd: repoRoot });
  const lines = r.stdout.trimEnd().split('\n');
  return { status: r.status, stdout: r.stdout, lastLine: lines[lines.length - 1]! };
}

const kernelSkip = (reason: string) => `describe('k', () => { it('runs', () => {}); it('skips', function () { skip(this, ${JSON.stringify(reason)}); }); });`;

describe('summary reporter: the last line and the CI rule', () => {
  it('nothing skipped: exactly "N passed, N failed", exit 0, also under CI=true', () => {
    const files = specs({ 'kernel/a.test.js': `describe('k', () => { it('one', () => {}); it('two', () => {}); });` });
    for (const ci of [undefined, 'true']) {
      const r = mocha(files, ci);
      expect(r.lastLine).to.equal('2 passed, 0 failed');
      expect(r.stdout).to.not.include('skipped');
      expect(r.status).to.equal(0);
    }
  });

  it('a skip is counted on the last line and listed with its reason; without CI the run stays green', () => {
    const r = mocha(specs({ 'kernel/a.test.js': kernelSkip('not running as root') }));
    expect(r.lastLine).to.equal('1 passed, 0 failed, 1 skipped');
    expect(r.stdout).to.match(/^ {2}\S*test\/kernel\/a\.test\.js: 1 test: not running as root \[not allowed on CI\]$/m);
    expect(r.status).to.equal(0);
  });

  it('CI=true: a kernel test skipped for a reason CI cannot have fails the run, and the line says so', () => {
    const r = mocha(specs({ 'kernel/a.test.js': kernelSkip('not running as root') }), 'true');
    expect(r.lastLine).to.equal('1 passed, 0 failed, 1 skipped; CI: 1 kernel test may not skip here');
    expect(r.status).to.equal(1);
  });

  it('CI=true: a kernel skip for an allowed reason (with details) keeps the run green', () => {
    const reason = `${CI_ALLOWED_SKIP_REASONS[0]}: dmsetup missing`;
    const r = mocha(specs({ 'kernel/a.test.js': kernelSkip(reason) }), 'true');
    expect(r.lastLine).to.equal('1 passed, 0 failed, 1 skipped');
    expect(r.stdout).to.include(`1 test: ${reason} [allowed on CI]`);
    expect(r.status).to.equal(0);
  });

  it('CI=true: a unit test may skip (the rule is for kernel tests)', () => {
    const r = mocha(specs({ 'unit/u.test.js': kernelSkip('not running as root') }), 'true');
    expect(r.lastLine).to.equal('1 passed, 0 failed, 1 skipped');
    expect(r.status).to.equal(0);
  });

  it('a skip in before() skips the whole suite with its reason; CI=true counts every test', () => {
    const body = `describe('k', function () {
      before(function () { skip(this, 'no /dev/loop-control (loop driver missing)'); });
      it('a', () => {}); it('b', () => {});
      describe('inner', () => { it('c', () => {}); });
    });`;
    const files = specs({ 'kernel/a.test.js': body });
    const plain = mocha(files);
    expect(plain.lastLine).to.equal('0 passed, 0 failed, 3 skipped');
    expect(plain.stdout).to.include('3 tests: no /dev/loop-control (loop driver missing) [not allowed on CI]');
    const ci = mocha(files, 'true');
    expect(ci.lastLine).to.equal('0 passed, 0 failed, 3 skipped; CI: 3 kernel tests may not skip here');
    expect(ci.status).to.equal(3);
  });

  it('a skip that bypasses skip() has no reason: listed as such, and CI=true fails it', () => {
    // mocha's own it.skip (spelled so that the check at the end of this file does not flag it)
    const r = mocha(specs({ 'kernel/a.test.js': `describe('k', () => { it${'.'}skip('quietly', () => {}); });` }), 'true');
    expect(r.stdout).to.include('1 test: no reason recorded (skipped without test/support/skip.ts) [not allowed on CI]');
    expect(r.lastLine).to.equal('0 passed, 0 failed, 1 skipped; CI: 1 kernel test may not skip here');
    expect(r.status).to.equal(1);
  });

  it('failures and CI violations add up in the exit status', () => {
    const files = specs({
      'kernel/a.test.js': kernelSkip('user namespaces disabled (max_user_namespaces=0)'),
      'unit/b.test.js': `describe('u', () => { it('fails', () => { throw new Error('no'); }); });`,
    });
    const r = mocha(files, 'true');
    expect(r.lastLine).to.equal('1 passed, 1 failed, 1 skipped; CI: 1 kernel test may not skip here');
    expect(r.status).to.equal(2);
  });

  it('only the listed reasons are allowed, whole or followed by ": detail"', () => {
    expect(CI_ALLOWED_SKIP_REASONS).to.deep.equal(['no device-mapper']);
    expect(ciAllowsSkip('no device-mapper')).to.equal(true);
    expect(ciAllowsSkip('no device-mapper: dmsetup missing')).to.equal(true);
    expect(ciAllowsSkip('no device-mapperx')).to.equal(false);
    expect(ciAllowsSkip('not running as root')).to.equal(false);
  });

  it('the README lists exactly the allowed reasons', () => {
    const readme = fs.readFileSync(path.join(repoRoot, 'README.md'), 'utf8');
    const start = readme.indexOf('\n### Skipped tests\n');
    expect(start, 'README has a "Skipped tests" section').to.be.greaterThan(0);
    const section = readme.slice(start + 1).split(/\n#{2,3} /)[0]!;
    const listed = [...section.matchAll(/^- `([^`]+)`/gm)].map((m) => m[1]);
    expect(listed).to.deep.equal([...CI_ALLOWED_SKIP_REASONS]);
  });
});

describe('summary reporter: the kernel specs where they cannot run', () => {
  it('CI=true, as nobody (or unprivileged): every kernel test skips, the run is not green', function () {
    this.timeout(60_000);
    const root = process.geteuid?.() === 0;
    const asNobody = root ? ['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups'] : [];
    // As nobody, the run reads the checkout where nobody can reach it.
    const view = root ? nobodyView() : { root: repoRoot, close: () => undefined };
    const argv = [...asNobody, process.execPath, path.join(view.root, path.relative(repoRoot, mochaBin))];
    const e: NodeJS.ProcessEnv = { ...env('true'), IMGMOUNT_TEST_SPEC: 'dist/test/kernel/**/*.test.js' };
    delete e.IMGMOUNT_STATE_DIR; // the child run makes its own
    let r;
    try {
      r = spawnSync(argv[0]!, argv.slice(1), { env: e, encoding: 'utf8', cwd: view.root, maxBuffer: 64 * 1024 * 1024 });
    } finally {
      view.close();
    }
    const last = r.stdout.trimEnd().split('\n').pop()!;
    const m = /^(\d+) passed, 0 failed, (\d+) skipped; CI: (\d+) kernel tests may not skip here$/.exec(last);
    expect(m, `${last}\n${r.stderr}`).to.not.equal(null);
    expect(Number(m![2])).to.be.greaterThan(100);
    expect(m![3]).to.equal(m![2]);
    expect(r.status).to.equal(Math.min(Number(m![3]), 255));
    expect(r.stdout).to.match(/test\/kernel\/loop\/loop\.test\.js: \d+ tests: not running as root \[not allowed on CI\]/);
  });
});

describe('skips go through test/support/skip.ts', () => {
  it('no test calls mocha\'s skip directly (it would record no reason)', () => {
    const offenders: string[] = [];
    const walk = (dir: string): void => {
      for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
        const p = path.join(dir, e.name);
        if (e.isDirectory()) walk(p);
        else if (e.name.endsWith('.ts') && p !== path.join(repoRoot, 'test', 'support', 'skip.ts')) {
          fs.readFileSync(p, 'utf8')
            .split('\n')
            .forEach((line, i) => {
              if (/\b(?:this|ctx|context)\.skip\(|\b(?:it|describe|context|specify)\.skip\(|\bx(?:it|describe|context|specify)\(/.test(line))
                offenders.push(`${path.relative(repoRoot, p)}:${i + 1}: ${line.trim()}`);
            });
        }
      }
    };
    walk(path.join(repoRoot, 'test'));
    expect(offenders).to.deep.equal([]);
  });
});
