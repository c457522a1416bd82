// Counting this process's open fds, to prove an operation leaked none.
import * as fs from 'node:fs';

export function openFds(): string[] {
  return fs.readdirSync('/proc/self/fd').sort((a, b) => Number(a) - Number(b));
}

/** Flags of an open fd from /proc/self/fdinfo (octal in the file). */
export function fdFlags(fd: number): number {
  const info = fs.readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8');
  return Number.parseInt(/^flags:\s*([0-7]+)/m.exec(info)![1]!, 8);
}

export const O_CLOEXEC = 0o2000000;
export const O_ACCMODE = 3;
