// Generated fixtures (scripts/make-fixtures.ts), built once per checkout on first use. Tests get
// a copy of each fixture file in the run's temp dir (directories are read in place): a loop
// device a test attaches is then bound to a file of this run, which is how the leak check
// (test/support/leaks.ts) knows it is ours, and no test can change the checkout's copy.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ensureGenerated } from './generated';
import { testTmp } from './hooks';

const copies = new Map<string, string>();

/** `file` copied once per run under testTmp/`dir` (same name); a missing file or a directory is returned as is. */
export function runCopy(file: string, dir: string): string {
  let copy = copies.get(file);
  if (copy) return copy;
  if (!fs.statSync(file, { throwIfNoEntry: false })?.isFile() || fs.lstatSync(file).isSymbolicLink()) return file;
  copy = path.join(testTmp, dir, path.basename(file));
  fs.mkdirSync(path.dirname(copy), { recursive: true });
  fs.copyFileSync(file, copy);
  fs.chmodSync(copy, fs.statSync(file).mode & 0o7777);
  copies.set(file, copy);
  return copy;
}

/** Path of (this run's copy of) a generated fixture, generating the set first if needed. */
export function fixture(name: string): string {
  const file = path.join(ensureGenerated(), name);
  return path.dirname(name) === '.' ? runCopy(file, 'fixtures') : file;
}
