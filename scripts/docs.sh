#!/usr/bin/env bash
# Builds the API reference from the declarations (TypeDoc, which needs the TypeScript 5.9 the
# repo pins) into dist/docs/api, and checks it: TypeDoc's validation as errors (a {@link} that
# leads nowhere, a type a public signature uses but the package does not export), then every
# relative link and anchor in the generated pages and the README's relative links
# (scripts/check-links.ts). Needs the build (scripts/build.sh); about 15 s.
set -euo pipefail
cd "$(dirname "$0")/.."
out=dist/docs/api
mkdir -p dist/docs
# The library alone (the repo's tsconfig also compiles the tests and scripts).
printf '{ "extends": "../../tsconfig.json", "compilerOptions": { "rootDir": "../..", "types": ["node"] }, "include": ["../../lib/**/*.ts"] }\n' >dist/docs/tsconfig.json
rm -rf "$out"
npx --no-install typedoc --entryPoints lib/index.ts --tsconfig dist/docs/tsconfig.json --out "$out" \
  --name imgmount --readme none --excludeInternal --excludeExternals --disableSources \
  --validation.invalidLink --validation.notExported --intentionallyNotExported NAMED \
  --treatWarningsAsErrors --logLevel Warn
node dist/scripts/check-links.js "$out" README.md SECURITY.md DEVELOPERS.md ARCHITECTURE.md
echo "docs: $out/index.html"
