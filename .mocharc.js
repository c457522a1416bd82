'use strict';
// Tests are TypeScript compiled to dist/test; run `npm run build:ts` first (scripts/test.sh does).
module.exports = {
  spec: ['dist/test/**/*.test.js'],
  require: ['dist/test/support/hooks.js'],
  reporter: 'test/support/summary-reporter.js',
  timeout: 20000,
  slow: 500,
};
