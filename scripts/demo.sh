#!/usr/bin/env bash
# The main job: sets up this machine (host tools, npm install and build) and runs the demo:
# build a SIF, inspect it, mount it by the kernel and the FUSE driver, unmount, check that
# nothing is left. As root the demo runs in a private mount namespace, so even a crash
# cannot leave a mount on the host.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-host.sh
scripts/build.sh
if [ "$(id -u)" -eq 0 ] && unshare --mount --propagation private true 2>/dev/null; then
  exec unshare --mount --propagation private -- node dist/scripts/demo.js "$@"
fi
exec node dist/scripts/demo.js "$@"
