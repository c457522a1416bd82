// imgmount mount | umount | root: mounting images from the command line. The mounts outlive
// the command (FUSE helpers are left running, loop devices autoclear with the unmount);
// `imgmount umount TARGET` releases whatever imgmount built for TARGET.

import { hasErrorCode } from '../errors';
import { init } from '../image/init';
import type { Image } from '../image/image';
import type { DriverMode } from '../drivers/select';
import type { MountedFilesystem } from '../drivers/types';
import { mountImage, type MountImageOptions } from '../root/mount-image';
import { releaseMount } from '../root/release';
import { root, type RootOptions } from '../root/root';
import * as fs from 'node:fs/promises';
import { asInitOptions, asOptions } from './as';
import { interruptible } from './interrupt';
import { choosePartition } from './select';
import { parse, UsageError, write, type CliIO, type Command } from './usage';

const mountOptions = {
  driver: { type: 'string' },
  writable: { type: 'boolean' },
  'writable-tmpfs': { type: 'boolean' },
  overlay: { type: 'string', multiple: true },
  partition: { type: 'string' },
  id: { type: 'string' },
  userns: { type: 'string' },
  mntns: { type: 'string' },
  'key-file': { type: 'string' },
  trusted: { type: 'boolean' },
  'kernel-extfs': { type: 'boolean' },
  'no-kernel-squashfs': { type: 'boolean' },
  'no-kernel-extfs': { type: 'boolean' },
  json: { type: 'boolean' },
  ...asOptions,
} as const;

type Values = ReturnType<typeof parse<typeof mountOptions>>['values'];

function pid(name: string, v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  if (!/^[1-9]\d*$/.test(v)) throw new UsageError(`${name} takes a process id, not "${v}"`);
  return Number(v);
}

async function common(values: Values): Promise<MountImageOptions> {
  const driver = values.driver ?? 'auto';
  if (!['auto', 'kernel', 'fuse'].includes(driver)) throw new UsageError(`--driver takes auto, kernel or fuse, not "${driver}"`);
  const userns = pid('--userns', values.userns);
  const mntns = pid('--mntns', values.mntns);
  if (values['kernel-extfs'] && values['no-kernel-extfs']) throw new UsageError('--kernel-extfs and --no-kernel-extfs contradict each other');
  const o: MountImageOptions = { driver: driver as DriverMode, persist: true };
  if (values.trusted) o.trusted = true;
  if (values['kernel-extfs']) o.allowKernelExtfs = true;
  if (values['no-kernel-squashfs']) o.allowKernelSquashfs = false;
  if (values['no-kernel-extfs']) o.allowKernelExtfs = false;
  if (mntns !== undefined) o.namespace = userns !== undefined ? { userns: { pid: userns }, mntns: { pid: mntns } } : { mntns: { pid: mntns } };
  else if (userns !== undefined) o.userns = { pid: userns };
  if (values['key-file'] !== undefined) o.key = (await fs.readFile(values['key-file'])).toString().replace(/\n$/, '');
  return o;
}

function describe(m: MountedFilesystem): Record<string, unknown> {
  return { target: m.target, driver: m.driver, fstype: m.fstype, readOnly: m.readOnly, loopDevice: m.loopDevice, helpers: m.helpers };
}

type Who = Awaited<ReturnType<typeof asInitOptions>>;

async function openImage(file: string, values: Values, who: Who, signal: AbortSignal): Promise<Image> {
  const rw = Boolean(values.writable) && !values['writable-tmpfs'];
  return init(file, rw, { readOnlyFallback: false, signal, ...who });
}

export const mountCommand: Command = {
  name: 'mount',
  usage:
    'imgmount mount [--driver auto|kernel|fuse] [--writable] [--writable-tmpfs] [--overlay IMAGE]... [--partition NAME | --id N]\n' +
    '               [--userns PID] [--mntns PID] [--key-file F] [--trusted] [--kernel-extfs]\n' +
    '               [--no-kernel-squashfs] [--no-kernel-extfs] [--as UID[:GID] [--allow-block-device]] [--json] IMAGE TARGET',
  summary:
    'mount an image (its root, with overlays) or one partition at TARGET. The kernel parses ext3 only with\n' +
    '      --trusted (you vouch for IMAGE) or --kernel-extfs, squashfs only with --trusted or when IMAGE is writable\n' +
    '      by root alone; FUSE parses the rest (CVE-2023-30549). --driver kernel counts as --trusted;\n' +
    '      --no-kernel-squashfs / --no-kernel-extfs keep the kernel away whatever else is given',
  async run(args: string[], io: CliIO): Promise<number> {
    const { values, positionals } = parse(args, mountOptions);
    if (positionals.length !== 2) throw new UsageError('mount takes IMAGE and TARGET');
    const [file, target] = positionals as [string, string];
    return whileInterruptible(io, async (signal) => {
      const opts = { ...(await common(values)), signal };
      const who = await asInitOptions(values);
      const image = await openImage(file, values, who, signal);
      try {
        if (values.partition !== undefined || values.id !== undefined) {
          if (values['writable-tmpfs'] || values.overlay) throw new UsageError('--writable-tmpfs and --overlay apply to the root, not to one partition');
          const partition = choosePartition(image, values);
          const m = await mountImage(image, target, { ...opts, partition, writable: Boolean(values.writable) });
          await write(io.stdout, values.json ? JSON.stringify(describe(m)) + '\n' : summary(m));
          return 0;
        }
        const r = await root(image, target, rootOptions(opts, values, who));
        await write(io.stdout, values.json ? JSON.stringify({ root: r.root, mounts: r.mounts.map(describe) }) + '\n' : r.mounts.map(summary).join(''));
        return 0;
      } finally {
        await image.close();
      }
    });
  },
};

/**
 * Runs a command that builds mounts so that SIGINT/SIGTERM abort it: what it had done is
 * undone, and it exits with 128 + the signal's number.
 */
async function whileInterruptible(io: CliIO, run: (signal: AbortSignal) => Promise<number>): Promise<number> {
  const i = interruptible();
  try {
    return await run(i.signal);
  } catch (err) {
    if (i.status === null || (err as { code?: string }).code !== 'ABORT_ERR') throw err;
    await write(io.stderr, `imgmount: interrupted by ${i.name}: what had been mounted was undone\n`);
    return i.status;
  } finally {
    i.dispose();
  }
}

function rootOptions(opts: MountImageOptions, values: Values, who: Who): RootOptions {
  const r: RootOptions = { ...opts, ...who, writable: Boolean(values.writable), writableTmpfs: Boolean(values['writable-tmpfs']) };
  if (values.overlay) r.overlays = values.overlay.map((p) => ({ path: p, writable: Boolean(values.writable) && values.overlay!.length === 1 }));
  return r;
}

function summary(m: MountedFilesystem): string {
  const by = m.loopDevice ? ` via ${m.loopDevice}` : m.helpers.length ? ` served by ${m.helpers.map((h) => `${h.program}[${h.pid}]`).join(', ')}` : '';
  return `${m.target}: ${m.fstype}, ${m.readOnly ? 'read-only' : 'read-write'}, ${m.driver} driver${by}\n`;
}

export const rootCommand: Command = {
  name: 'root',
  usage: 'imgmount root [mount options] IMAGE TARGET',
  summary: 'mount the container root like `mount` and print the OCI runtime-spec Root JSON',
  async run(args: string[], io: CliIO): Promise<number> {
    const { values, positionals } = parse(args, mountOptions);
    if (positionals.length !== 2) throw new UsageError('root takes IMAGE and TARGET');
    if (values.partition !== undefined || values.id !== undefined) throw new UsageError('root mounts the root filesystem; use mount --partition for others');
    const [file, target] = positionals as [string, string];
    return whileInterruptible(io, async (signal) => {
      const opts = { ...(await common(values)), signal };
      const who = await asInitOptions(values);
      const image = await openImage(file, values, who, signal);
      try {
        const r = await root(image, target, rootOptions(opts, values, who));
        await write(io.stdout, JSON.stringify(r.root) + '\n');
        return 0;
      } finally {
        await image.close();
      }
    });
  },
};

export const umountCommand: Command = {
  name: 'umount',
  usage: 'imgmount umount [--mntns PID] TARGET...',
  summary: 'unmount what imgmount mounted at TARGET (in the mount namespace of PID with --mntns), with its FUSE helpers, internal mounts and loop devices',
  async run(args: string[], io: CliIO): Promise<number> {
    const { values, positionals } = parse(args, { mntns: { type: 'string' } });
    if (positionals.length === 0) throw new UsageError('umount takes one or more TARGETs');
    const mntns = pid('--mntns', values.mntns);
    let status = 0;
    for (const t of positionals) {
      try {
        await releaseMount(t, mntns !== undefined ? { namespace: { mntns: { pid: mntns } } } : {});
      } catch (err) {
        if (!hasErrorCode(err, 'ERR_NOT_MOUNTED') || positionals.length === 1) throw err;
        await write(io.stderr, `imgmount: ${(err as Error).message}\n`);
        status = 1;
      }
    }
    return status;
  },
};
