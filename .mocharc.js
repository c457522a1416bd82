'use strict';
// Tests are TypeScript compiled to dist/test; `npm run build:ts` first (scripts/test.sh does).
// IMGMOUNT_TEST_SPEC narrows the run to a glob, e.g. 'dist/test/unit/sif-*.test.js'.
module.exports = {
  spec: [process.env.IMGMOUNT_TEST_SPEC || 'dist/test/**/*.test.js'],
  require: ['dist/test/support/hooks.js'],
  reporter: 'test/support/summary-reporter.js',
  timeout: 20000,
  slow: 500,
};
