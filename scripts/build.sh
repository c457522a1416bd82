#!/usr/bin/env bash
# Installs the npm dependencies when the lock file changed (npm ci also builds the addon and
# compiles the TypeScript), otherwise rebuilds only what changed.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund --loglevel=error
else
  if [ -f build/Makefile ]; then npx --no-install node-gyp build --loglevel=error >/dev/null; else npx --no-install node-gyp rebuild --loglevel=error >/dev/null; fi
  npx --no-install tsc -p tsconfig.json
fi
