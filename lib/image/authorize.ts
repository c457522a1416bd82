// Access-control checks an operator configures: allowed directories, owners and groups.
//
// Unlike Apptainer: containment is decided on resolved paths with path.relative (never a
// string prefix: /data/foo does not contain /data/foobar); one bad limit path or one
// unknown user/group name does not stop the others from being checked; numeric ids work.

import * as fs from 'node:fs';
import * as path from 'node:path';
import { debug } from '../util/debug';
import { fromNodeError } from '../errors';
import { fstatFd } from '../io/fd';
import { native } from '../native/binding';

/** True if `child` is `parent` or lies inside it (both absolute and resolved). */
export function pathContains(parent: string, child: string): boolean {
  const rel = path.relative(parent, child);
  return rel === '' || (rel !== '..' && !rel.startsWith('../') && !path.isAbsolute(rel));
}

/** True if the resolved `imagePath` lies inside one of `limitPaths` (each resolved first). */
export async function authorizedPath(imagePath: string, limitPaths: readonly string[]): Promise<boolean> {
  for (const limit of limitPaths) {
    if (typeof limit !== 'string' || limit === '') continue;
    let resolved: string;
    try {
      resolved = await fs.promises.realpath(path.resolve(limit));
    } catch (err) {
      debug('authorizedPath: cannot resolve %s: %s', limit, (err as Error).message);
      continue;
    }
    if (pathContains(resolved, imagePath)) return true;
  }
  return false;
}

function fstat(fd: number): Promise<fs.Stats> {
  return fstatFd(fd).catch((err: unknown) => {
    throw fromNodeError(err, 'failed to get stat for image');
  });
}

async function resolveIds(names: readonly string[], lookup: (name: string) => Promise<number | null>): Promise<number[]> {
  const ids: number[] = [];
  for (const name of names) {
    if (typeof name !== 'string' || name === '') continue;
    if (/^\d+$/.test(name)) {
      ids.push(Number(name));
      continue;
    }
    try {
      const id = await lookup(name);
      if (id !== null) ids.push(id);
      else debug('no such user or group: %s', name);
    } catch (err) {
      debug('lookup of %s failed: %s', name, (err as Error).message);
    }
  }
  return ids;
}

/** True if the file behind `fd` is owned by one of `owners` (user names or numeric uids). */
export async function authorizedOwner(fd: number, owners: readonly string[]): Promise<boolean> {
  const st = await fstat(fd);
  const ids = await resolveIds(owners, (n) => native((b) => b.lookupUser(n)));
  return ids.includes(st.uid);
}

/** True if the file behind `fd` belongs to one of `groups` (group names or numeric gids). */
export async function authorizedGroup(fd: number, groups: readonly string[]): Promise<boolean> {
  const st = await fstat(fd);
  const ids = await resolveIds(groups, (n) => native((b) => b.lookupGroup(n)));
  return ids.includes(st.gid);
}
