// The built-in FUSE driver. Not registered globally: the caller (lib/root, the CLI) decides.
export { FuseDriver, type FuseDriverOptions, type FuseMountParams } from './driver';
export {
  FUSE_PACKAGES,
  FUSE_PROGRAMS,
  fuseBinaries,
  locateFuseBinaries,
  resetFuseBinaries,
  squashfuseOwnerOptions,
  type FuseBinaries,
  type FuseBinaryOptions,
  type FuseProgram,
} from './binaries';
export { releaseFuseMount, releaseMountRecord, stopRecordedHelpers, type FuseMountRecord, type ReleaseOptions } from './release';
export { removeSessionDir } from '../mount-record';
export { filterHelperOutput, type HelperExit, type StopTimings } from './helper-process';
export { DEFAULT_MOUNT_TIMEOUT_MS, waitForMount, type MountWait, type WaitForMountOptions } from './wait-mount';
