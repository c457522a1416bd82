// Generated fixtures (scripts/make-fixtures.ts), built once per checkout on first use.
import { execFileSync } from 'node:child_process';
import * as path from 'node:path';
import { fixturesCurrent } from '../../scripts/make-fixtures';
import { generatedDir, repoRoot } from './paths';

let ready = false;

/** Path of a generated fixture, generating the set first if needed. */
export function fixture(name: string): string {
  if (!ready) {
    if (!fixturesCurrent(generatedDir)) {
      execFileSync(process.execPath, [path.join(repoRoot, 'dist', 'scripts', 'make-fixtures.js'), generatedDir], { stdio: 'inherit' });
    }
    ready = true;
  }
  return path.join(generatedDir, name);
}
