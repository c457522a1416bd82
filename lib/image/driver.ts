// The image driver interface of Apptainer's pkg/image (async here) and its registry.
// Built-in drivers (kernel, FUSE) come with the mounting layer; anything implementing
// Driver can be registered under a name.

import { ImgmountError } from '../errors';
import type { DriverFeature } from './constants';

/** What to mount: a partition (offset/size) of an image, or a filesystem such as overlay. */
export interface MountParams {
  /** The image (usually `/proc/self/fd/N`) or other source. */
  source: string;
  target: string;
  /** squashfs, ext3, overlay, gocryptfs, encryptfs... */
  filesystem: string;
  /** mount(2) flags (MS_*). */
  flags: number;
  offset: number;
  size: number;
  /** Decryption key, for encrypted partitions. */
  key?: Buffer;
  /** Filesystem options ("lowerdir=...", "errors=remount-ro"). */
  fsOptions: string[];
  /** Do not raise privileges for the helper (Apptainer's DontElevatePrivs). */
  dontElevatePrivs?: boolean;
}

/** What a driver gets when a container session starts. */
export interface DriverParams {
  /** Directory the driver may use for its own mounts. */
  sessionPath: string;
  /** A user-namespace fd to run helpers in, or -1. */
  usernsFd: number;
  /** An open /dev/fuse fd for drivers with FuseFeature, or -1. */
  fuseFd: number;
  config?: Record<string, unknown>;
}

/** Performs a mount on the driver's behalf (Apptainer's MountFunc: mount(2) arguments). */
export type MountFunc = (source: string, target: string, fstype: string, flags: number, data: string) => Promise<void>;

export interface Driver {
  /**
   * Mounts `params`; may use `mountFunc` for the kernel part of the work. Built-in drivers
   * resolve with a handle (MountedFilesystem) that releases the mount.
   */
  mount(params: MountParams, mountFunc: MountFunc): Promise<unknown>;
  /** Starts the driver for a container whose init has `containerPid`. */
  start(params: DriverParams, containerPid: number, hybrid?: boolean): Promise<void>;
  /** Stops what serves `target` (after its unmount); "" means the session is ending. */
  stop(target: string): Promise<void>;
  /** The DriverFeature bits this driver provides. */
  features(): DriverFeature;
}

const drivers = new Map<string, Driver>();

/** Registers `driver` under `name`; errors for an empty name, a taken name, or no driver. */
export function registerDriver(name: string, driver: Driver): void {
  if (typeof name !== 'string' || name === '') throw new ImgmountError('ERR_DRIVER_REGISTRY', 'empty name');
  if (drivers.has(name)) throw new ImgmountError('ERR_DRIVER_REGISTRY', `${name} is already registered`);
  if (!driver || typeof driver !== 'object') throw new ImgmountError('ERR_DRIVER_REGISTRY', 'nil driver');
  drivers.set(name, driver);
}

/** The driver registered under `name`, or undefined. */
export function getDriver(name: string): Driver | undefined {
  return drivers.get(name);
}

/** Removes a registration (for tests and for replacing a driver); true if there was one. */
export function unregisterDriver(name: string): boolean {
  return drivers.delete(name);
}
