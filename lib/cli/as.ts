// `--as UID[:GID]` and `--allow-block-device`: open the image (and overlays) with a user's
// credentials, as a root daemon acting for that user would (init's `as`).

import type { UserCredentials } from '../image/credentials';
import { native } from '../native/binding';
import { UsageError } from './usage';

export const asOptions = {
  as: { type: 'string' },
  'allow-block-device': { type: 'boolean' },
} as const;

export type UserInfoLookup = (uid: number) => Promise<{ gid: number; groups: number[] } | null>;

const MAX_ID = 0xfffffffe;

function id(what: string, s: string, v: string): number {
  const n = Number(s);
  if (!Number.isSafeInteger(n) || n > MAX_ID) throw new UsageError(`--as: ${what} ${s} is out of range (0 to ${MAX_ID}) in "${v}"`);
  return n;
}

/**
 * The credentials `--as UID[:GID]` names: GID defaults to the passwd entry's group, and the
 * supplementary groups are the ones the group database gives that user (getgrouplist). With
 * no passwd entry, GID must be given and there are no supplementary groups.
 */
export async function parseAs(value: string | undefined, lookup: UserInfoLookup = (uid) => native((b) => b.userInfo(uid))): Promise<UserCredentials | undefined> {
  if (value === undefined) return undefined;
  const m = /^(\d+)(?::(\d+))?$/.exec(value);
  if (!m) throw new UsageError(`--as takes UID or UID:GID (numbers), not "${value}"`);
  const uid = id('UID', m[1]!, value);
  const gid = m[2] === undefined ? undefined : id('GID', m[2], value);
  const entry = await lookup(uid);
  if (!entry && gid === undefined) throw new UsageError(`--as ${value}: uid ${uid} has no passwd entry; give the group too (--as ${uid}:GID)`);
  return { uid, gid: gid ?? entry!.gid, groups: entry ? [...entry.groups] : [] };
}

/** init/root options from the parsed `--as` and `--allow-block-device` values. */
export async function asInitOptions(values: { as?: string; 'allow-block-device'?: boolean }): Promise<{ as?: UserCredentials; allowBlockDevice?: boolean }> {
  const as = await parseAs(values.as);
  if (as === undefined) {
    if (values['allow-block-device']) throw new UsageError('--allow-block-device only applies with --as');
    return {};
  }
  return { as, allowBlockDevice: Boolean(values['allow-block-device']) };
}
