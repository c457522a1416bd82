// Loop-device state read from sysfs, without privilege (/sys/block/loopN/{ro,size,dev} and
// /sys/block/loopN/loop/{backing_file,offset,sizelimit,autoclear,partscan,dio}). The loop/
// directory exists only while a device is bound.

import * as fsp from 'node:fs/promises';
import { constants as osConstants } from 'node:os';
import { SystemError, invalidArgValue, invalidArgType } from '../errors';
import { native } from '../native/binding';
import { toNumberOrBig } from '../util/bigint';
import { api } from '../util/stack';

export interface LoopStatus {
  /** Kernel name, e.g. 'loop3'. */
  name: string;
  number: number;
  /** '/dev/loop3'. */
  path: string;
  /** 'major:minor'. */
  majorMinor: string;
  bound: boolean;
  /** The backing file as the kernel shows it (null when unbound); see `backingFileDeleted`. */
  backingFile: string | null;
  /** The kernel appended ' (deleted)': the file was unlinked after attaching. */
  backingFileDeleted: boolean;
  offset: number | bigint;
  sizeLimit: number | bigint;
  /** Size of the block device in bytes. */
  size: number | bigint;
  readOnly: boolean;
  autoclear: boolean;
  partscan: boolean;
  directIo: boolean;
}

const LOOP_NAME = /^loop(\d+)$/;
/** The sysfs attributes read for each device, in the order parseLoopStatus() takes their values. */
export const LOOP_SYSFS_ATTRS = ['dev', 'ro', 'size', 'loop/backing_file', 'loop/offset', 'loop/sizelimit', 'loop/autoclear', 'loop/partscan', 'loop/dio'] as const;
const MAX_ATTR = 8192;
const { ENOENT } = osConstants.errno;

/** Accepts 3, '3', 'loop3' or '/dev/loop3'; returns the device number. */
export function loopNumber(device: unknown): number {
  if (typeof device === 'number') {
    if (Number.isSafeInteger(device) && device >= 0) return device;
    throw invalidArgValue('device', device, 'must be a non-negative integer');
  }
  if (typeof device !== 'string') throw invalidArgType('device', 'a loop device number or path', device);
  const m = /^(?:\/dev\/)?(?:loop)?(\d+)$/.exec(device);
  if (!m) throw invalidArgValue('device', device, "must name a loop device ('/dev/loopN', 'loopN' or N)");
  return Number(m[1]);
}

/**
 * The state of device `number` from the text of its LOOP_SYSFS_ATTRS (in that order); a
 * number in place of a text is the errno that stopped reading it (ENOENT: the loop/ directory
 * of an unbound device). null when the device does not exist (no `dev`).
 */
export function parseLoopStatus(number: number, values: ReadonlyArray<string | number>): LoopStatus | null {
  const [dev, ro, size, backing, offset, sizelimit, autoclear, partscan, dio] = values;
  if (typeof dev !== 'string') return null; // no such device
  const bound = typeof backing === 'string';
  let backingFile: string | null = null;
  let deleted = false;
  if (bound) {
    backingFile = (backing as string).replace(/\n$/, '');
    if (backingFile.endsWith(' (deleted)')) {
      deleted = true;
      backingFile = backingFile.slice(0, -' (deleted)'.length);
    }
  }
  const big = (v: string | number | undefined): number | bigint =>
    typeof v === 'string' && /^\d+\s*$/.test(v) ? toNumberOrBig(BigInt(v.trim())) : 0;
  const flag = (v: string | number | undefined): boolean => typeof v === 'string' && v.trim() === '1';
  const sectors = typeof size === 'string' ? BigInt(size.trim() || '0') : 0n;
  return {
    name: `loop${number}`,
    number,
    path: `/dev/loop${number}`,
    majorMinor: dev.trim(),
    bound,
    backingFile,
    backingFileDeleted: deleted,
    offset: bound ? big(offset) : 0,
    sizeLimit: bound ? big(sizelimit) : 0,
    size: toNumberOrBig(sectors * 512n),
    readOnly: flag(ro),
    autoclear: bound && flag(autoclear),
    partscan: bound && flag(partscan),
    directIo: bound && flag(dio),
  };
}

async function readStatuses(numbers: number[]): Promise<Array<LoopStatus | null>> {
  const paths = numbers.flatMap((n) => LOOP_SYSFS_ATTRS.map((a) => `/sys/block/loop${n}/${a}`));
  const values = paths.length ? await native((b) => b.readTextFiles(paths, MAX_ATTR)) : [];
  return numbers.map((n, i) => parseLoopStatus(n, values.slice(i * LOOP_SYSFS_ATTRS.length, (i + 1) * LOOP_SYSFS_ATTRS.length)));
}

/** State of one loop device. Throws a SystemError ENOENT if the kernel has no such device. */
export function loopStatus(device: number | string | { number: number }): Promise<LoopStatus> {
  return api(loopStatus, () => loopStatusImpl(device));
}

async function loopStatusImpl(device: number | string | { number: number }): Promise<LoopStatus> {
  const n = typeof device === 'object' && device !== null ? loopNumber(device.number) : loopNumber(device);
  const [status] = await readStatuses([n]);
  if (!status) throw new SystemError({ errno: ENOENT, syscall: 'open', path: `/sys/block/loop${n}` });
  return status;
}

export interface ListLoopOptions {
  /** Include devices that exist but are not bound (default false). */
  all?: boolean;
}

/** Every loop device the kernel has (bound ones only unless `all`), by number. */
export function listLoopDevices(options: ListLoopOptions = {}): Promise<LoopStatus[]> {
  return api(listLoopDevices, () => listLoopDevicesImpl(options));
}

async function listLoopDevicesImpl(options: ListLoopOptions = {}): Promise<LoopStatus[]> {
  const names = await fsp.readdir('/sys/block');
  const numbers = names
    .map((n) => LOOP_NAME.exec(n))
    .filter((m): m is RegExpExecArray => m !== null)
    .map((m) => Number(m[1]))
    .sort((a, b) => a - b);
  const statuses = await readStatuses(numbers);
  return statuses.filter((s): s is LoopStatus => s !== null && (options.all === true || s.bound));
}
