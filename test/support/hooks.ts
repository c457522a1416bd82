// Root hooks for every test run: a private temp dir, and (for tests that mount) the leak
// check that fails the suite if a loop device or mount made by the tests is left behind.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { addLeakRoot, checkLeaks, snapshotLeaks } from './leaks';
import { repoRoot, sharedDir } from './paths';

/** Per-run scratch directory; everything a test creates lives under it. */
export const testTmp = fs.mkdtempSync(path.join(os.tmpdir(), 'imgmount-test-'));

// Mount records and session directories (overlay layers, FUSE chains) of this run stay
// under testTmp too, where the leak check looks.
process.env.IMGMOUNT_STATE_DIR = path.join(testTmp, 'state');

addLeakRoot(testTmp);
addLeakRoot(repoRoot);
addLeakRoot(sharedDir);

export const mochaHooks = {
  beforeAll(): void {
    snapshotLeaks();
  },
  afterAll(): void {
    // Checked before the temp dir goes, so backing files still resolve; cleaned up either way.
    const leaked = checkLeaks(testTmp);
    fs.rmSync(testTmp, { recursive: true, force: true });
    if (leaked) throw new Error(`tests left loop devices or mounts behind (now cleaned up):\n  ${leaked}`);
  },
};
