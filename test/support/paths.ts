// Where tests find things. The shared fixtures are read in place, never copied.
import * as path from 'node:path';

export const repoRoot = path.resolve(__dirname, '..', '..', '..');
export const sharedDir = path.resolve(process.env.IMGMOUNT_SHARED ?? path.join(repoRoot, '..', 'shared'));
export const sifFixturesDir = path.join(sharedDir, 'fixtures', 'sif');
export const sifGoldenDir = path.join(sifFixturesDir, 'golden', 'pkg', 'sif', 'testdata');
/** Fixtures that scripts/make-fixtures.sh generates (not committed). */
export const generatedDir = path.resolve(process.env.IMGMOUNT_FIXTURES ?? path.join(repoRoot, 'test', 'fixtures', 'generated'));
