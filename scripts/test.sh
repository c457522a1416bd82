#!/usr/bin/env bash
# Sets up and runs the whole test suite: host tools, npm install and build, fixtures, then
# mocha inside a private mount namespace so that no test mount can reach the host.
# The last line of output is "N passed, N failed" (", N skipped" when tests were skipped; with
# CI=true a skipped kernel test fails the run: README, "Skipped tests").
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-host.sh
scripts/build.sh
node dist/scripts/make-fixtures.js >/dev/null
if [ "$(id -u)" -eq 0 ] && unshare --mount --propagation private true 2>/dev/null; then
  exec unshare --mount --propagation private -- npx --no-install mocha "$@"
fi
echo "test.sh: not root or no mount namespaces: running without a private mount namespace (kernel tests will skip)" >&2
exec npx --no-install mocha "$@"
