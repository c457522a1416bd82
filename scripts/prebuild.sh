#!/usr/bin/env bash
# npm pack's prepack (and so npm publish's): builds the addon and imgmount-nsenter from source
# in a clean copy and puts them where the package ships them, prebuilds/linux-x64/ (the loader,
# lib/native/binding.ts, tries a local build first, then that; scripts/install.js builds from
# source only when it does not load). N-API: one binary serves every supported Node.
# Runs on linux-x64 with glibc only, so that the binary is what the directory name says.
# postpack removes prebuilds/ again (`scripts/prebuild.sh --clean`): it is never committed.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

if [ "${1:-}" = --clean ]; then
  rm -rf "$root/prebuilds"
  exit 0
fi

target="$(node -p 'process.platform + "-" + process.arch')"
glibc="$(node -p 'process.report.getReport().header.glibcVersionRuntime || ""')"
if [ "$target" != linux-x64 ] || [ -z "$glibc" ]; then
  echo "prebuild: prebuilds are made on linux-x64 with glibc, not $target${glibc:+ (glibc $glibc)}" >&2
  exit 1
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cp -r binding.gyp native "$work/"
ln -s "$root/node_modules" "$work/node_modules"
(cd "$work" && "$root/node_modules/.bin/node-gyp" rebuild --release --loglevel=error >/dev/null)

out="$root/prebuilds/$target"
rm -rf "$root/prebuilds"
mkdir -p "$out"
for f in imgmount.node imgmount-nsenter; do
  install -m 0755 "$work/build/Release/$f" "$out/$f"
  strip --strip-unneeded "$out/$f"
done
echo "prebuild: $out (glibc $glibc): $(cd "$out" && ls | tr '\n' ' ')" >&2
