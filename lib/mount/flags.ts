// mount(2) flags: Apptainer's numeric form (a uintptr) and named options, both accepted.

import { invalidArgType, invalidArgValue, outOfRange } from '../errors';

export const MS_RDONLY = 1;
export const MS_NOSUID = 2;
export const MS_NODEV = 4;
export const MS_NOEXEC = 8;
export const MS_SYNCHRONOUS = 16;
export const MS_REMOUNT = 32;
export const MS_MANDLOCK = 64;
export const MS_DIRSYNC = 128;
export const MS_NOSYMFOLLOW = 256;
export const MS_NOATIME = 1024;
export const MS_NODIRATIME = 2048;
export const MS_BIND = 4096;
export const MS_MOVE = 8192;
export const MS_REC = 16384;
export const MS_SILENT = 32768;
export const MS_POSIXACL = 1 << 16;
export const MS_UNBINDABLE = 1 << 17;
export const MS_PRIVATE = 1 << 18;
export const MS_SLAVE = 1 << 19;
export const MS_SHARED = 1 << 20;
export const MS_RELATIME = 1 << 21;
export const MS_STRICTATIME = 1 << 24;
export const MS_LAZYTIME = 1 << 25;

/** umount2(2) flags. */
export const MNT_FORCE = 1;
export const MNT_DETACH = 2;
export const MNT_EXPIRE = 4;
export const UMOUNT_NOFOLLOW = 8;

/** MOUNT_ATTR_* for fsmount/mount_setattr. */
export const MOUNT_ATTR_RDONLY = 0x1;
export const MOUNT_ATTR_NOSUID = 0x2;
export const MOUNT_ATTR_NODEV = 0x4;
export const MOUNT_ATTR_NOEXEC = 0x8;
export const MOUNT_ATTR_RELATIME = 0x0;
export const MOUNT_ATTR_NOATIME = 0x10;
export const MOUNT_ATTR_STRICTATIME = 0x20;
export const MOUNT_ATTR_NODIRATIME = 0x80;
export const MOUNT_ATTR_IDMAP = 0x100000;
export const MOUNT_ATTR_NOSYMFOLLOW = 0x200000;

const NAMED = {
  ro: MS_RDONLY,
  rdonly: MS_RDONLY,
  nosuid: MS_NOSUID,
  nodev: MS_NODEV,
  noexec: MS_NOEXEC,
  sync: MS_SYNCHRONOUS,
  remount: MS_REMOUNT,
  mand: MS_MANDLOCK,
  dirsync: MS_DIRSYNC,
  nosymfollow: MS_NOSYMFOLLOW,
  noatime: MS_NOATIME,
  nodiratime: MS_NODIRATIME,
  bind: MS_BIND,
  move: MS_MOVE,
  rec: MS_REC,
  silent: MS_SILENT,
  unbindable: MS_UNBINDABLE,
  private: MS_PRIVATE,
  slave: MS_SLAVE,
  shared: MS_SHARED,
  relatime: MS_RELATIME,
  strictatime: MS_STRICTATIME,
  lazytime: MS_LAZYTIME,
} as const;

export type MountFlagName = keyof typeof NAMED;

/** A uintptr as Apptainer passes it, a list of names, or { name: true } switches. */
export type MountFlags = number | bigint | readonly MountFlagName[] | Partial<Record<MountFlagName, boolean>>;

export function mountFlagsToNumber(flags: MountFlags | undefined, name = 'flags'): number {
  if (flags === undefined) return 0;
  if (typeof flags === 'number' || typeof flags === 'bigint') {
    const n = Number(flags);
    if (!Number.isInteger(n) || n < 0 || n > 0xffffffff) throw outOfRange(name, 'an unsigned 32-bit integer', flags);
    return n >>> 0;
  }
  if (Array.isArray(flags)) {
    let n = 0;
    for (const f of flags) n |= bit(name, f);
    return n >>> 0;
  }
  if (typeof flags === 'object' && flags !== null) {
    let n = 0;
    for (const [k, on] of Object.entries(flags)) if (on) n |= bit(name, k);
    return n >>> 0;
  }
  throw invalidArgType(name, 'a number, a bigint, an array of flag names or an object', flags);
}

function bit(name: string, f: unknown): number {
  if (typeof f === 'string' && Object.prototype.hasOwnProperty.call(NAMED, f)) return NAMED[f as MountFlagName];
  throw invalidArgValue(name, f, `must be one of ${Object.keys(NAMED).join(', ')}`);
}

/** The per-mount options mountinfo lists by name that a bind remount must restate to keep. */
const PER_MOUNT_OPTIONS: readonly MountFlagName[] = ['ro', 'nosuid', 'nodev', 'noexec', 'noatime', 'nodiratime', 'relatime', 'strictatime'];

/**
 * The MS_* flags of per-mount options as mountinfo's field 6 lists them ("rw", "nosuid", ...),
 * for a bind remount (MS_REMOUNT|MS_BIND), which sets exactly the flags it is given. Other
 * names ("rw", superblock or unknown options) add nothing.
 */
export function perMountFlags(options: Iterable<string>): number {
  let n = 0;
  for (const o of options) if ((PER_MOUNT_OPTIONS as readonly string[]).includes(o)) n |= NAMED[o as MountFlagName];
  return n >>> 0;
}

/** 'MS_RDONLY|MS_NOSUID|0x...' for messages and debug logs (runc's style). */
export function formatMountFlags(n: number): string {
  const parts: string[] = [];
  let rest = n >>> 0;
  for (const [k, v] of Object.entries({
    MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_SYNCHRONOUS, MS_REMOUNT, MS_MANDLOCK, MS_DIRSYNC,
    MS_NOSYMFOLLOW, MS_NOATIME, MS_NODIRATIME, MS_BIND, MS_MOVE, MS_REC, MS_SILENT, MS_POSIXACL,
    MS_UNBINDABLE, MS_PRIVATE, MS_SLAVE, MS_SHARED, MS_RELATIME, MS_STRICTATIME, MS_LAZYTIME,
  })) {
    if (rest & v) {
      parts.push(k);
      rest = (rest & ~v) >>> 0;
    }
  }
  if (rest) parts.push(`0x${rest.toString(16)}`);
  return parts.length ? parts.join('|') : '0';
}

/** umount2 flags: a number or names. */
export type UmountFlags = number | readonly ('force' | 'detach' | 'expire' | 'nofollow')[];

export function umountFlagsToNumber(flags: UmountFlags | undefined): number {
  if (flags === undefined) return 0;
  if (typeof flags === 'number') {
    if (!Number.isInteger(flags) || flags < 0 || flags > 15) throw outOfRange('flags', 'a umount2 flag set (0..15)', flags);
    return flags;
  }
  if (!Array.isArray(flags)) throw invalidArgType('flags', 'a number or an array of flag names', flags);
  const map = { force: MNT_FORCE, detach: MNT_DETACH, expire: MNT_EXPIRE, nofollow: UMOUNT_NOFOLLOW } as const;
  let n = 0;
  for (const f of flags) {
    if (typeof f !== 'string' || !(f in map)) throw invalidArgValue('flags', f, 'must be force, detach, expire or nofollow');
    n |= map[f as keyof typeof map];
  }
  return n;
}

/** The part of mount(2) flags that fsconfig/fsmount can express; null when a flag needs mount(2). */
export interface NewApiFlags {
  options: Array<[string, string | null]>;
  attrs: number;
}

const SB_FLAG_OPTIONS: Array<[number, string]> = [
  [MS_RDONLY, 'ro'],
  [MS_SYNCHRONOUS, 'sync'],
  [MS_DIRSYNC, 'dirsync'],
  [MS_LAZYTIME, 'lazytime'],
  [MS_MANDLOCK, 'mand'],
];
const ATTR_OF: Array<[number, number]> = [
  [MS_RDONLY, MOUNT_ATTR_RDONLY],
  [MS_NOSUID, MOUNT_ATTR_NOSUID],
  [MS_NODEV, MOUNT_ATTR_NODEV],
  [MS_NOEXEC, MOUNT_ATTR_NOEXEC],
  [MS_NOATIME, MOUNT_ATTR_NOATIME],
  [MS_STRICTATIME, MOUNT_ATTR_STRICTATIME],
  [MS_NODIRATIME, MOUNT_ATTR_NODIRATIME],
  [MS_NOSYMFOLLOW, MOUNT_ATTR_NOSYMFOLLOW],
];
const NEW_API_EXPRESSIBLE =
  MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_SYNCHRONOUS | MS_MANDLOCK | MS_DIRSYNC | MS_NOSYMFOLLOW |
  MS_NOATIME | MS_NODIRATIME | MS_RELATIME | MS_STRICTATIME | MS_LAZYTIME | MS_SILENT;

/** Splits mount(2) data ("a=b,c") into fsconfig keys. */
export function parseMountData(data: string | undefined): Array<[string, string | null]> {
  if (!data) return [];
  return data
    .split(',')
    .filter((s) => s.length > 0)
    .map((s): [string, string | null] => {
      const eq = s.indexOf('=');
      return eq < 0 ? [s, null] : [s.slice(0, eq), s.slice(eq + 1)];
    });
}

/** Translates flags + data for fsopen/fsconfig/fsmount, or null if only mount(2) can do it. */
export function toNewApi(flags: number, data: string | undefined): NewApiFlags | null {
  if ((flags & ~NEW_API_EXPRESSIBLE) >>> 0 !== 0) return null;
  const options: Array<[string, string | null]> = [];
  for (const [f, key] of SB_FLAG_OPTIONS) if (flags & f) options.push([key, null]);
  options.push(...parseMountData(data));
  let attrs = 0;
  for (const [f, a] of ATTR_OF) if (flags & f) attrs |= a;
  return { options, attrs };
}

/** Mount data given as a string or as { key: value | true } (true: a flag without value). */
export type MountData = string | Readonly<Record<string, string | number | boolean>>;

export function mountDataToString(data: MountData | undefined): string | undefined {
  if (data === undefined) return undefined;
  if (typeof data === 'string') return data;
  if (typeof data !== 'object' || data === null) throw invalidArgType('data', 'a string or an object', data);
  return Object.entries(data)
    .filter(([, v]) => v !== false)
    .map(([k, v]) => (v === true ? k : `${k}=${String(v)}`))
    .join(',');
}
