// What the filesystem tools themselves say about an image (unsquashfs -s, dumpe2fs -h):
// expected values for tests of imgmount's own superblock readers, never taken from imgmount.
import { execFileSync } from 'node:child_process';

export interface SquashfsFacts {
  major: number;
  minor: number;
  compression: string;
  blockSize: number;
  /** "Filesystem size N bytes": the superblock's bytes_used. */
  bytesUsed: number;
}

function field(text: string, re: RegExp, what: string): string {
  const m = re.exec(text);
  if (!m) throw new Error(`${what} not found in:\n${text}`);
  return m[1]!;
}

/** `unsquashfs -s [-o offset] file`, parsed. */
export function unsquashfsFacts(file: string, offset = 0): SquashfsFacts {
  const out = execFileSync('unsquashfs', ['-s', ...(offset ? ['-o', String(offset)] : []), file], { encoding: 'utf8' });
  const [major, minor] = field(out, /Found a valid SQUASHFS (\d+:\d+) superblock/, 'version').split(':').map(Number) as [number, number];
  return {
    major,
    minor,
    compression: field(out, /^Compression (\S+)$/m, 'compression'),
    blockSize: Number(field(out, /^Block size (\d+)$/m, 'block size')),
    bytesUsed: Number(field(out, /^Filesystem size (\d+) bytes/m, 'filesystem size')),
  };
}

export interface ExtFacts {
  blockCount: number;
  blockSize: number;
  label: string;
  uuid: string;
  features: string[];
}

/** `dumpe2fs -h file`, parsed. */
export function dumpe2fsFacts(file: string): ExtFacts {
  const out = execFileSync('dumpe2fs', ['-h', file], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
  const label = field(out, /^Filesystem volume name:\s*(.*)$/m, 'volume name');
  return {
    blockCount: Number(field(out, /^Block count:\s*(\d+)$/m, 'block count')),
    blockSize: Number(field(out, /^Block size:\s*(\d+)$/m, 'block size')),
    label: label === '<none>' ? '' : label,
    uuid: field(out, /^Filesystem UUID:\s*(\S+)$/m, 'UUID'),
    features: field(out, /^Filesystem features:\s*(.*)$/m, 'features').split(/\s+/),
  };
}

/** One entry of `unsquashfs -lln [-o offset] file path`: its mode string, owner and size. */
export function unsquashfsEntry(file: string, inside: string, offset = 0): { mode: string; uid: number; gid: number; size: number } {
  const out = execFileSync('unsquashfs', ['-lln', ...(offset ? ['-o', String(offset)] : []), file, inside], { encoding: 'utf8' });
  const line = out.split('\n').find((l) => l.endsWith(` squashfs-root/${inside}`));
  if (!line) throw new Error(`${inside} not listed by unsquashfs:\n${out}`);
  const [mode, owner, size] = line.split(/\s+/) as [string, string, string];
  const [uid, gid] = owner.split('/').map(Number) as [number, number];
  return { mode, uid, gid, size: Number(size) };
}
