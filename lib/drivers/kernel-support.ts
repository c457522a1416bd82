// Which squashfs compressions this kernel decompresses, from its build configuration
// (/proc/config.gz, else /boot/config-<release>). Mainline squashfs never had legacy lzma
// (only xz), so without a configuration we assume the five mainline compressors.

import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import { promisify } from 'node:util';
import { gunzip as gunzipCb } from 'node:zlib';

// On the pool, not the event loop: /proc/config.gz inflates to ~150-250 KiB.
const gunzip = promisify(gunzipCb);

const mainline = ['gzip', 'lzo', 'lz4', 'xz', 'zstd'];
const configNames: Record<string, string> = {
  CONFIG_SQUASHFS_ZLIB: 'gzip',
  CONFIG_SQUASHFS_LZO: 'lzo',
  CONFIG_SQUASHFS_LZ4: 'lz4',
  CONFIG_SQUASHFS_XZ: 'xz',
  CONFIG_SQUASHFS_ZSTD: 'zstd',
};

let memo: Promise<{ compressions: string[]; source: string }> | undefined;

async function readKernelConfig(): Promise<{ text: string; source: string } | undefined> {
  try {
    return { text: (await gunzip(await fs.readFile('/proc/config.gz'))).toString('latin1'), source: '/proc/config.gz' };
  } catch {
    // not built with IKCONFIG_PROC
  }
  const boot = `/boot/config-${os.release()}`;
  try {
    return { text: await fs.readFile(boot, 'latin1'), source: boot };
  } catch {
    return undefined;
  }
}

/** Compressions the kernel's squashfs reads, and where that was learnt. IMGMOUNT_KERNEL_SQUASHFS_COMP overrides (comma list). */
export function kernelSquashfsCompressions(): Promise<{ compressions: string[]; source: string }> {
  const override = process.env.IMGMOUNT_KERNEL_SQUASHFS_COMP;
  if (override !== undefined) {
    return Promise.resolve({ compressions: override.split(',').map((s) => s.trim()).filter(Boolean), source: 'IMGMOUNT_KERNEL_SQUASHFS_COMP' });
  }
  memo ??= (async () => {
    const config = await readKernelConfig();
    if (!config) return { compressions: mainline, source: 'assumed (no kernel configuration readable)' };
    const compressions = Object.entries(configNames)
      .filter(([key]) => new RegExp(`^${key}=[ym]$`, 'm').test(config.text))
      .map(([, name]) => name);
    return { compressions, source: config.source };
  })();
  return memo;
}
