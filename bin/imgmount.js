#!/usr/bin/env node
'use strict';
require('../dist/lib/cli/main')
  .main(process.argv.slice(2))
  .then((code) => {
    process.exitCode = code;
  });
