// Mocha's spec output, then the skipped tests with their reasons, then one last line from the
// reporter's own stats (CI reads that line):
//   "N passed, N failed"                when nothing was skipped,
//   "N passed, N failed, N skipped"     when something was.
// Under CI=true a skipped kernel test (a spec file under test/kernel/) fails the run unless
// test/support/skip.ts recorded a reason from CI_ALLOWED_SKIP_REASONS for it: the exit status
// is then non-zero and the line ends "; CI: M kernel tests may not skip here".
'use strict';
const path = require('node:path');
const Mocha = require('mocha');

const { EVENT_TEST_PENDING } = Mocha.Runner.constants;
const repoRoot = path.resolve(__dirname, '..', '..');
/** Property test/support/skip.ts sets (SKIP_RECORD there). */
const SKIP_RECORD = 'imgmountSkip';

/** The skip record on the test or on the nearest suite above it, if skip() made one. */
function skipRecord(test) {
  for (let r = test; r; r = r.parent) if (r[SKIP_RECORD]) return r[SKIP_RECORD];
  return undefined;
}

function isKernelTest(test) {
  const file = test.file || '';
  return file.split(path.sep).join('/').includes('/test/kernel/');
}

function ciEnabled() {
  return /^(true|1)$/i.test(process.env.CI || '');
}

class SummaryReporter extends Mocha.reporters.Spec {
  constructor(runner, options) {
    super(runner, options);
    this.runner = runner;
    /** @type {Array<{ title: string; file: string; kernel: boolean; reason: string | undefined; ciAllowed: boolean }>} */
    this.skips = [];
    runner.on(EVENT_TEST_PENDING, (test) => {
      const rec = skipRecord(test);
      this.skips.push({
        title: test.fullTitle(),
        file: test.file ? path.relative(repoRoot, test.file) : '(no file)',
        kernel: isKernelTest(test),
        reason: rec && rec.reason,
        ciAllowed: Boolean(rec && rec.ciAllowed),
      });
    });
  }

  /** Tests whose skip fails a CI run. */
  ciViolations() {
    return ciEnabled() ? this.skips.filter((s) => s.kernel && !s.ciAllowed) : [];
  }

  /**
   * Mocha calls this after the run (after the spec epilogue) with the failure count and uses
   * what we pass on as the exit status.
   */
  done(failures, fn) {
    const s = this.runner.stats || this.stats;
    const out = [];
    if (this.skips.length) {
      out.push(`skipped (${this.skips.length}):`);
      // One line per file and reason; the spec output above names each test.
      const groups = new Map();
      for (const k of this.skips) {
        const key = `${k.file}\0${k.reason ?? ''}`;
        const g = groups.get(key) ?? { ...k, n: 0 };
        g.n++;
        groups.set(key, g);
      }
      for (const g of groups.values()) {
        const why = g.reason ?? 'no reason recorded (skipped without test/support/skip.ts)';
        const ci = g.kernel ? (g.ciAllowed ? ' [allowed on CI]' : ' [not allowed on CI]') : '';
        out.push(`  ${g.file}: ${g.n} ${g.n === 1 ? 'test' : 'tests'}: ${why}${ci}`);
      }
    }
    const bad = this.ciViolations();
    let line = `${s.passes} passed, ${s.failures} failed`;
    if (s.pending > 0) line += `, ${s.pending} skipped`;
    if (bad.length) line += `; CI: ${bad.length} kernel ${bad.length === 1 ? 'test' : 'tests'} may not skip here`;
    out.push(line);
    process.stdout.write(`${out.join('\n')}\n`);
    fn(failures + bad.length);
  }
}

module.exports = SummaryReporter;
