// Facts about this machine that tests hold the library to, found without the library: the
// architecture Node itself reports (process.arch) and what binfmt_misc lists. A test that
// expects "this image runs here" or "this one is refused" takes its answer from here, never
// from hostArch()/archRunnable(), so that a broken mapping cannot pass by agreeing with itself.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

/** Go architecture names (the names SIF uses) of Node's process.arch values. */
export function goArchOf(nodeArch: string, endianness: 'BE' | 'LE' = os.endianness()): string | undefined {
  const table: Record<string, string> = {
    x64: 'amd64',
    ia32: '386',
    arm64: 'arm64',
    arm: 'arm',
    ppc64: endianness === 'LE' ? 'ppc64le' : 'ppc64',
    s390x: 's390x',
    riscv64: 'riscv64',
    loong64: 'loong64',
    mips: 'mips',
    mipsel: 'mipsle',
  };
  return table[nodeArch];
}

/** This host's Go architecture, by Node's process.arch. */
export const HOST_ARCH: string =
  goArchOf(process.arch) ??
  (() => {
    throw new Error(`test/support/host.ts: no Go architecture known for process.arch ${process.arch}`);
  })();

/** 32-bit code a 64-bit CPU of this kind runs natively (x86-64 runs i386, AArch64 runs ARM). */
const NATIVE_32: Record<string, string> = { amd64: '386', arm64: 'arm' };

const BINFMT_DIR = '/proc/sys/fs/binfmt_misc';

/** Emulator registrations binfmt_misc lists ([] when it is not mounted: then none exist). */
export function binfmtEntries(dir = BINFMT_DIR): string[] {
  try {
    return fs.readdirSync(dir).filter((n) => n !== 'status' && n !== 'register' && fs.statSync(path.join(dir, n)).isFile());
  } catch {
    return [];
  }
}

/**
 * Whether an image built for Go architecture `arch` runs on this host: the same architecture,
 * its 32-bit sibling, or "unknown" do; anything else does not while binfmt_misc registers no
 * emulator. With emulators registered the answer depends on them, which a test cannot judge
 * without repeating the library's rule: undefined, and the test skips saying so.
 */
export function expectedRunnable(arch: string): boolean | undefined {
  if (arch === 'unknown' || arch === HOST_ARCH || NATIVE_32[HOST_ARCH] === arch) return true;
  const emulators = binfmtEntries();
  return emulators.length === 0 ? false : undefined;
}

/** The reason a test prints when expectedRunnable() cannot say. */
export function emulatorsSkipReason(arch: string): string {
  return `binfmt_misc registers emulators (${binfmtEntries().join(', ')}), so whether ${arch} images run here is theirs to say`;
}
