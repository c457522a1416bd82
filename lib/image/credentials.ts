// Acting for a user: whose credentials an image is opened with (init's `as`).
//
// A root daemon that opens a path a user named reads what root may read: a symlink to
// /dev/sda1 or to /root/secret.sif would be followed, detected and mounted. Apptainer never
// meets this because it runs as the user; a daemon has to open the image *as the user*
// (native/credentials.cc) and refuse block devices unless asked.

import { invalidArgType, outOfRange } from '../errors';

/** A user's credentials: effective uid and gid, and the supplementary groups (may be empty). */
export interface UserCredentials {
  uid: number;
  gid: number;
  groups: readonly number[];
}

/** Largest valid id: (uid_t)-1 means "unchanged" to the kernel. */
const MAX_ID = 0xfffffffe;
/** The kernel's NGROUPS_MAX. */
const MAX_GROUPS = 65536;

function validateId(v: unknown, name: string): number {
  if (typeof v !== 'number') throw invalidArgType(name, 'of type number', v);
  if (!Number.isInteger(v) || v < 0 || v > MAX_ID) throw outOfRange(name, `an integer >= 0 && <= ${MAX_ID}`, v);
  return v;
}

/**
 * Checks `as` and returns a frozen copy (the caller cannot change it while it is used).
 * Node-style errors: ERR_INVALID_ARG_TYPE for a wrong type, ERR_OUT_OF_RANGE for an id that
 * is negative, fractional or too large.
 */
export function validateCredentials(v: unknown, name = 'options.as'): UserCredentials {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) throw invalidArgType(name, 'an object with uid, gid and groups', v);
  const o = v as Record<string, unknown>;
  const uid = validateId(o.uid, `${name}.uid`);
  const gid = validateId(o.gid, `${name}.gid`);
  if (!Array.isArray(o.groups)) throw invalidArgType(`${name}.groups`, 'an array of group ids', o.groups);
  if (o.groups.length > MAX_GROUPS) throw outOfRange(`${name}.groups.length`, `<= ${MAX_GROUPS} (NGROUPS_MAX)`, o.groups.length);
  const groups = Object.freeze(o.groups.map((g: unknown, i) => validateId(g, `${name}.groups[${i}]`)));
  return Object.freeze({ uid, gid, groups });
}

/** "uid 1000 (gid 1000)", for messages. */
export function describeCredentials(c: UserCredentials): string {
  return `uid ${c.uid} (gid ${c.gid})`;
}
