// Where tests find things. The shared fixtures are read in place; a test that attaches a loop
// device or a FUSE helper to one uses a copy in the run's temp dir (fixtures.ts runCopy()).
import * as fs from 'node:fs';
import * as path from 'node:path';

export const repoRoot = path.resolve(__dirname, '..', '..', '..');

// ../shared next to the checkout; IMGMOUNT_SHARED overrides, and a clone made elsewhere
// (e.g. in a temp dir) finds the workplace copy.
const sharedCandidates = [process.env.IMGMOUNT_SHARED, path.join(repoRoot, '..', 'shared'), '/work/shared'].filter(
  (p): p is string => typeof p === 'string' && p !== '',
);
export const sharedDir = path.resolve(sharedCandidates.find((p) => fs.existsSync(path.join(p, 'fixtures', 'sif'))) ?? sharedCandidates[0]!);
export const sifFixturesDir = path.join(sharedDir, 'fixtures', 'sif');
export const sifGoldenDir = path.join(sifFixturesDir, 'golden', 'pkg', 'sif', 'testdata');
/** Fixtures that scripts/make-fixtures.ts generates (not committed). */
export const generatedDir = path.resolve(process.env.IMGMOUNT_FIXTURES ?? path.join(repoRoot, 'test', 'fixtures', 'generated'));
