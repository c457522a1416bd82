// createUserNamespace(): a user namespace with given id maps, held as an fd.
//
// The helper unshares a user namespace and reports; we (root, or holding the capability in
// our namespace) write /proc/<pid>/{setgroups,uid_map,gid_map}, open /proc/<pid>/ns/user and
// then let the helper exit by closing its stdin. The fd keeps the namespace alive. This is
// how runc and libmount obtain a userns fd for ID-mapped mounts without joining anything.

import { spawn } from 'node:child_process';
import * as fsp from 'node:fs/promises';
import type { Readable, Writable } from 'node:stream';
import { ImgmountError, invalidArgValue, throwIfAborted } from '../errors';
import { debug } from '../util/debug';
import { api } from '../util/stack';
import { trustedHelperPath } from '../native/binding';
import { parseHelperResult } from './helper';
import { NamespaceFd } from './namespace';

/** One line of uid_map/gid_map: ids [inside, inside+count) map to [outside, outside+count). */
export interface IdMapRange {
  inside: number;
  outside: number;
  count: number;
}

export interface CreateUserNamespaceOptions {
  uidMap: readonly IdMapRange[];
  gidMap: readonly IdMapRange[];
  /** /proc/PID/setgroups: 'deny' is required for an unprivileged writer (default 'allow'). */
  setgroups?: 'allow' | 'deny';
  signal?: AbortSignal;
}

function mapText(name: string, ranges: readonly IdMapRange[]): string {
  if (!Array.isArray(ranges) || ranges.length === 0 || ranges.length > 340) throw invalidArgValue(name, ranges, 'must list 1 to 340 ranges');
  return ranges
    .map((r) => {
      for (const k of ['inside', 'outside', 'count'] as const)
        if (!Number.isInteger(r[k]) || r[k] < 0 || r[k] > 0xffffffff) throw invalidArgValue(`${name}.${k}`, r[k], 'must be a 32-bit unsigned integer');
      return `${r.inside} ${r.outside} ${r.count}\n`;
    })
    .join('');
}

export function createUserNamespace(options: CreateUserNamespaceOptions): Promise<NamespaceFd> {
  return api(createUserNamespace, () => createUserNamespaceImpl(options));
}

async function createUserNamespaceImpl(options: CreateUserNamespaceOptions): Promise<NamespaceFd> {
  const uid = mapText('uidMap', options.uidMap);
  const gid = mapText('gidMap', options.gidMap);
  throwIfAborted(options.signal);
  const exe = await trustedHelperPath();
  const child = spawn(exe, ['--result', '3', 'userns-hold'], { stdio: ['pipe', 'ignore', 'pipe', 'pipe'] });
  const exited = new Promise<void>((resolve) => {
    child.once('close', () => resolve());
    child.once('error', () => child.pid === undefined && resolve());
  });
  const stdin = child.stdin as Writable;
  stdin.on('error', () => undefined);
  try {
    const result = child.stdio[3] as Readable;
    result.setEncoding('utf8');
    const text = await new Promise<string>((resolve, reject) => {
      let t = '';
      result.on('data', (d: string) => {
        t += d;
        if (t.includes('\n')) resolve(t);
      });
      result.once('end', () => resolve(t));
      child.once('error', (e) =>
        reject(new ImgmountError('ERR_HELPER_FAILED', `cannot start the namespace helper ${exe}: ${e.message}`, { cause: e })),
      );
    });
    const r = parseHelperResult(text);
    if (!r || !r.ok)
      throw new ImgmountError('ERR_NAMESPACE', `cannot create a user namespace: ${r ? `${r.step} failed with errno ${r.errno}` : 'the helper gave no result'}`, {
        details: r ? { errno: -(r.errno ?? 0), syscall: r.step } : {},
      });
    const pid = child.pid!;
    await fsp.writeFile(`/proc/${pid}/setgroups`, options.setgroups ?? 'allow');
    await fsp.writeFile(`/proc/${pid}/uid_map`, uid);
    await fsp.writeFile(`/proc/${pid}/gid_map`, gid);
    const ns = await NamespaceFd.fromPid(pid, 'user');
    debug('userns: created (inode %s) with uid map %j', ns.inode, options.uidMap);
    return ns;
  } finally {
    stdin.end();
    await exited;
  }
}
