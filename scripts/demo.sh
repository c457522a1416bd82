#!/usr/bin/env bash
# The main job: sets up this machine (host tools, npm install and build) and runs the demo.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-host.sh
scripts/build.sh
exec node dist/scripts/demo.js "$@"
