// /proc/PID/mountinfo read by the tests themselves, not through the library's parser, so an
// expectation about what is mounted does not come from the code under test. Mount points are
// compared unescaped (the kernel writes space, tab, newline and backslash as \ooo).
import * as fs from 'node:fs';

export interface KernelMount {
  mountPoint: string;
  fstype: string;
  source: string;
  /** Per-mount options (ro, nosuid, nodev, ...). */
  mountOptions: string[];
  /** Per-superblock options (user_id=, allow_other, ...). */
  superOptions: string[];
}

const unescape = (s: string): string => s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));

/** The entries of /proc/PID/mountinfo whose mount point is exactly `mountPoint`. */
export function kernelMountsAt(mountPoint: string, pid: number | 'self' = 'self'): KernelMount[] {
  return fs
    .readFileSync(`/proc/${pid}/mountinfo`, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((line) => {
      const [pre, post] = line.split(' - ') as [string, string];
      const f = pre.split(' ');
      const [fstype, source, superOptions] = post.split(' ') as [string, string, string];
      return { mountPoint: unescape(f[4]!), fstype, source: unescape(source), mountOptions: f[5]!.split(','), superOptions: superOptions.split(',') };
    })
    .filter((m) => m.mountPoint === mountPoint);
}
