// Can this host run an image built for architecture X?
//
// Same rule as Apptainer: the same Go architecture; a 32-bit sibling on its 64-bit host;
// or binfmt_misc enabled with an enabled, fix-binary ("F") entry whose magic is the arch's
// ELF header.

import * as fs from 'node:fs/promises';
import * as path from 'node:path';

/** Go architecture name of this host (the names SIF uses). */
export function hostArch(): string {
  switch (process.arch) {
    case 'x64':
      return 'amd64';
    case 'ia32':
      return '386';
    case 'arm64':
      return 'arm64';
    case 'arm':
      return 'arm';
    case 'ppc64':
      return require('node:os').endianness() === 'LE' ? 'ppc64le' : 'ppc64';
    case 's390x':
      return 's390x';
    case 'riscv64':
      return 'riscv64';
    case 'loong64':
      return 'loong64';
    case 'mips':
      return 'mips';
    case 'mipsel':
      return 'mipsle';
    default:
      return process.arch;
  }
}

/** 32-bit architectures a 64-bit host runs natively. */
const compatible32: Record<string, string> = {
  '386': 'amd64',
  arm: 'arm64',
  armbe: 'arm64be',
  mips: 'mips64',
  mipsle: 'mips64le',
};

// e_ident (class, data, version 1) + e_type EXEC + e_machine, as binfmt_misc/qemu register them.
const elf: Record<string, { bits64: boolean; le: boolean; machine: number }> = {
  '386': { bits64: false, le: true, machine: 0x03 },
  amd64: { bits64: true, le: true, machine: 0x3e },
  arm: { bits64: false, le: true, machine: 0x28 },
  arm64: { bits64: true, le: true, machine: 0xb7 },
  ppc64: { bits64: true, le: false, machine: 0x15 },
  ppc64le: { bits64: true, le: true, machine: 0x15 },
  mips: { bits64: false, le: false, machine: 0x08 },
  mipsle: { bits64: false, le: true, machine: 0x08 },
  mips64: { bits64: true, le: false, machine: 0x08 },
  mips64le: { bits64: true, le: true, machine: 0x08 },
  s390x: { bits64: true, le: false, machine: 0x16 },
  riscv64: { bits64: true, le: true, machine: 0xf3 },
  loong64: { bits64: true, le: true, machine: 0x102 },
};

/** Hex of the 20-byte ELF header prefix binfmt_misc entries match for `arch`. */
export function elfMagicHex(arch: string): string | undefined {
  const e = elf[arch];
  if (!e) return undefined;
  const b = Buffer.alloc(20);
  b.set([0x7f, 0x45, 0x4c, 0x46, e.bits64 ? 2 : 1, e.le ? 1 : 2, 1], 0);
  if (e.le) {
    b.writeUInt16LE(2, 16);
    b.writeUInt16LE(e.machine, 18);
  } else {
    b.writeUInt16BE(2, 16);
    b.writeUInt16BE(e.machine, 18);
  }
  return b.toString('hex');
}

const BINFMT_DIR = '/proc/sys/fs/binfmt_misc';

/** True if binfmt_misc has an enabled fix-binary entry for `arch`. */
export async function binfmtRuns(arch: string, dir = BINFMT_DIR): Promise<boolean> {
  const magic = elfMagicHex(arch);
  if (!magic) return false;
  let status: string;
  try {
    status = await fs.readFile(path.join(dir, 'status'), 'utf8');
  } catch {
    return false;
  }
  if (status !== 'enabled\n') return false;
  let entries: string[];
  try {
    entries = await fs.readdir(dir);
  } catch {
    return false;
  }
  for (const name of entries) {
    if (name === 'status' || name === 'register') continue;
    let text: string;
    try {
      text = await fs.readFile(path.join(dir, name), 'utf8');
    } catch {
      continue;
    }
    const lines = text.split('\n');
    const enabled = lines[0] === 'enabled';
    const flags = lines.find((l) => l.startsWith('flags: '))?.slice(7) ?? '';
    const entryMagic = lines.find((l) => l.startsWith('magic '))?.slice(6).trim();
    if (enabled && flags.includes('F') && entryMagic === magic) return true;
  }
  return false;
}

/** True if an image for Go architecture `arch` can run on this host ("unknown" always can). */
export async function archRunnable(arch: string, host = hostArch()): Promise<boolean> {
  if (arch === 'unknown' || arch === host) return true;
  if (compatible32[arch] === host) return true;
  return binfmtRuns(arch);
}
