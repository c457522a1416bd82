// The built-in image drivers (kernel, FUSE), driver selection and mount records.
import { registerDriver, getDriver } from '../image/driver';
import { FuseDriver } from './fuse/driver';
import { KernelDriver } from './kernel';

export { KernelDriver, kernelMountFunc, deviceMapperAvailable } from './kernel';
export { FuseDriver, fuseBinaries, releaseMountRecord, releaseFuseMount, type FuseDriverOptions, type FuseBinaries } from './fuse';
export { DriverSession } from './session';
export { chooseDriver, kernelTrust, SQUASHFUSE_COMPRESSIONS, type DriverChoice, type DriverMode, type DriverPolicy, type ImageFileOwnership } from './select';
export { kernelSquashfsCompressions } from './kernel-support';
export { findMountRecord, saveMountRecord, removeMountRecord, stateDir, ensureStateDir, sessionsDir, type MountRecord, type HelperRecord } from './mount-record';
export type { DriverMountParams, DriverName, MountedFilesystem } from './types';

// Registered like Apptainer's drivers, so getDriver('kernel') / getDriver('fuse') work for
// code written against Apptainer's registry. Each is one session: start() before use.
if (!getDriver('kernel')) registerDriver('kernel', new KernelDriver());
if (!getDriver('fuse')) registerDriver('fuse', new FuseDriver());
