// The generated fixtures (scripts/make-fixtures.ts), built once per checkout on first use. Apart
// from fixtures.ts (which also copies them into a test run's temp dir) so that programs that are
// not test runs, like the fuzzer, can make sure they exist without starting a run of their own.
import { execFileSync } from 'node:child_process';
import * as path from 'node:path';
import { fixturesCurrent } from '../../scripts/make-fixtures';
import { generatedDir, repoRoot } from './paths';

let ready = false;

/** Generates the fixture set into generatedDir unless it is current; returns that directory. */
export function ensureGenerated(): string {
  if (!ready) {
    if (!fixturesCurrent(generatedDir)) {
      execFileSync(process.execPath, [path.join(repoRoot, 'dist', 'scripts', 'make-fixtures.js'), generatedDir], { stdio: 'inherit' });
    }
    ready = true;
  }
  return generatedDir;
}
