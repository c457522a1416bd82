// The two facts driver selection needs on every mount: which filesystems the kernel has and
// whether /dev/fuse is there (and open to everyone). Two small reads, once per process; the
// full capabilities() (loop, mount API, ID-map probes with a helper process) builds on this
// and is only waited for by those who ask for it.

import * as fsp from 'node:fs/promises';

export interface HostFilesystems {
  /** /proc/filesystems, without the nodev marker. */
  filesystems: string[];
  fuse: {
    /** The kernel has fuse and /dev/fuse exists. */
    available: boolean;
    /** /dev/fuse permission bits (0o666 lets unprivileged users mount FUSE). */
    deviceMode: number | null;
    /** Others may open /dev/fuse. */
    unprivileged: boolean;
  };
  /** Why something is missing, when it is not simply absent from the kernel. */
  notes: string[];
}

let memo: Promise<HostFilesystems> | undefined;

/** Memoised; `refresh` reads again (capabilities({ refresh: true }) passes it on). */
export function hostFilesystems(refresh = false): Promise<HostFilesystems> {
  if (refresh || !memo) {
    memo = read();
    memo.catch(() => (memo = undefined));
  }
  return memo;
}

async function read(): Promise<HostFilesystems> {
  const notes: string[] = [];
  const [text, fuseMode] = await Promise.all([
    fsp.readFile('/proc/filesystems', 'utf8').catch(() => ''),
    fsp.stat('/dev/fuse').then(
      (st) => st.mode & 0o777,
      () => {
        notes.push('/dev/fuse does not exist');
        return null;
      },
    ),
  ]);
  const filesystems = text
    .split('\n')
    .map((l) => l.split('\t').pop()!.trim())
    .filter(Boolean);
  return {
    filesystems,
    fuse: {
      available: filesystems.includes('fuse') && fuseMode !== null,
      deviceMode: fuseMode,
      unprivileged: fuseMode !== null && (fuseMode & 0o006) === 0o006,
    },
    notes,
  };
}
