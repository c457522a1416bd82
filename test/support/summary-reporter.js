// Mocha's spec output, then one last line "N passed, N failed" from the reporter's own
// stats (CI reads that line). Skipped (pending) tests are listed by spec with their reason.
'use strict';
const Mocha = require('mocha');

class SummaryReporter extends Mocha.reporters.Spec {
  constructor(runner, options) {
    super(runner, options);
    runner.once(Mocha.Runner.constants.EVENT_RUN_END, () => {
      // Spec prints its epilogue on the same event; print after it.
      setImmediate(() => {
        const s = runner.stats || this.stats;
        process.stdout.write(`${s.passes} passed, ${s.failures} failed\n`);
      });
    });
  }
}

module.exports = SummaryReporter;
