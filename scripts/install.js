#!/usr/bin/env node
// npm's install step (package.json "install"). Plain JavaScript: it runs before anything is built.
//
// The published package ships the addon and its helper prebuilt (prebuilds/<platform>-<arch>,
// built by scripts/prebuild.sh at `npm pack`). This builds from source, with node-gyp (npm's own
// when the project has none), only when there is no prebuild for this machine (a clone, another
// architecture), when the prebuild does not load here (musl, an older glibc or libstdc++), or when
// asked: `npm install --build-from-source` (npm_config_build_from_source). A clone always builds.
// Nothing here touches the network.
'use strict';

const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const root = path.resolve(__dirname, '..');
const prebuildDir = path.join(root, 'prebuilds', `${process.platform}-${process.arch}`);

function log(message) {
  process.stderr.write(`imgmount install: ${message}\n`);
}

/** Why the prebuild cannot serve this machine, or null when it loads and its helper runs. */
function prebuildProblem() {
  const addon = path.join(prebuildDir, 'imgmount.node');
  const helper = path.join(prebuildDir, 'imgmount-nsenter');
  if (!fs.existsSync(addon)) return `no prebuilt addon for ${process.platform}-${process.arch}`;
  // In a child: a binary for another libc may crash the process that loads it.
  const load = spawnSync(process.execPath, ['-e', `require(${JSON.stringify(addon)})`], { encoding: 'utf8' });
  if (load.status !== 0) return `${addon} does not load here: ${(load.stderr || load.error?.message || '').trim().split('\n').find((l) => /Error|error/.test(l)) ?? `exit ${load.status}`}`;
  // Without arguments the helper reports a usage error (exit 2); a missing loader or symbol is 127.
  const run = spawnSync(helper, [], { encoding: 'utf8' });
  if (run.status !== 2) return `${helper} does not run here: ${run.error?.message ?? (run.stderr.trim() || `exit ${run.status}`)}`;
  return null;
}

const forced = /^(true|1)$/.test(process.env.npm_config_build_from_source ?? '');
// A git checkout builds its own (a prebuilds/ left by an interrupted `npm pack` is not for it).
const clone = fs.existsSync(path.join(root, '.git'));
const problem = forced ? 'building from source as asked (--build-from-source)' : clone ? 'a git checkout' : prebuildProblem();
if (problem === null) process.exit(0);
if (fs.existsSync(prebuildDir) || forced) log(`${problem}; building from source with node-gyp (needs python3, make and g++)`);
// `node-gyp` through PATH, as npm's default install step runs it: the project's own (a clone's
// devDependency) or npm's bundled one (npm puts its node-gyp-bin directory on the script's PATH).
const build = spawnSync('node-gyp', ['rebuild'], { cwd: root, stdio: 'inherit' });
if (build.error) log(`could not run node-gyp: ${build.error.message}`);
process.exit(build.status ?? 1);
