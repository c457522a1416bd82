// Resolving an image path the way Apptainer does: absolute, every symlink resolved.

import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { fromNodeError, invalidArgValue } from '../errors';

/** Absolute path of `p` with all symlinks resolved. */
export async function resolvePath(p: string): Promise<string> {
  if (p === '') throw invalidArgValue('path', p, 'must not be empty (failed to get absolute path)');
  try {
    return await fs.realpath(path.resolve(p));
  } catch (err) {
    throw fromNodeError(err, `failed to retrieve path for ${p}`);
  }
}
