// /proc/<pid>/mountinfo, parsed field by field (proc(5)); every comparison is on exact,
// unescaped fields, never on prefixes (so /dev/loop1 never matches /dev/loop10, nor /mnt/a
// match /mnt/ab).

import * as fsp from 'node:fs/promises';

export interface MountInfoEntry {
  id: number;
  parentId: number;
  major: number;
  minor: number;
  /** Root of the mount within its filesystem. */
  root: string;
  mountPoint: string;
  /** Per-mount options (ro, nosuid, nodev, noexec, relatime, ...). */
  mountOptions: string[];
  /** Optional fields such as shared:N, master:N, propagate_from:N, unbindable. */
  optionalFields: string[];
  fstype: string;
  source: string;
  /** Per-superblock options. */
  superOptions: string[];
}

/** Undoes the kernel's octal escapes (\040 space, \011 tab, \012 newline, \134 backslash). */
export function unescapeMountField(s: string): string {
  return s.includes('\\') ? s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8))) : s;
}

export function parseMountInfoLine(line: string): MountInfoEntry | null {
  const fields = line.split(' ');
  const sep = fields.indexOf('-', 6);
  if (fields.length < 10 || sep < 6 || fields.length < sep + 4) return null;
  const [id, parent, majmin, root, mountPoint, opts] = fields;
  const mm = /^(\d+):(\d+)$/.exec(majmin!);
  if (!mm) return null;
  return {
    id: Number(id),
    parentId: Number(parent),
    major: Number(mm[1]),
    minor: Number(mm[2]),
    root: unescapeMountField(root!),
    mountPoint: unescapeMountField(mountPoint!),
    mountOptions: opts!.split(','),
    optionalFields: fields.slice(6, sep),
    fstype: unescapeMountField(fields[sep + 1]!),
    source: unescapeMountField(fields[sep + 2]!),
    superOptions: fields.slice(sep + 3).join(' ').split(','),
  };
}

export function parseMountInfo(text: string): MountInfoEntry[] {
  const out: MountInfoEntry[] = [];
  for (const line of text.split('\n')) {
    if (!line) continue;
    const e = parseMountInfoLine(line);
    if (e) out.push(e);
  }
  return out;
}

/** Reads and parses /proc/<pid>/mountinfo (default: this process). */
export async function readMountInfo(pid: number | 'self' = 'self', options: { signal?: AbortSignal } = {}): Promise<MountInfoEntry[]> {
  return parseMountInfo(await fsp.readFile(`/proc/${pid}/mountinfo`, { encoding: 'utf8', ...(options.signal ? { signal: options.signal } : {}) }));
}

export interface MountQuery {
  mountPoint?: string;
  source?: string;
  fstype?: string;
  major?: number;
  minor?: number;
}

/** Entries whose given fields are all exactly equal to the query's. */
export function findMounts(entries: readonly MountInfoEntry[], q: MountQuery): MountInfoEntry[] {
  return entries.filter(
    (e) =>
      (q.mountPoint === undefined || e.mountPoint === q.mountPoint) &&
      (q.source === undefined || e.source === q.source) &&
      (q.fstype === undefined || e.fstype === q.fstype) &&
      (q.major === undefined || e.major === q.major) &&
      (q.minor === undefined || e.minor === q.minor),
  );
}
