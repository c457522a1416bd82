// Mounting: Apptainer's MountFunc, image partitions with safe defaults, mountinfo, capabilities.
export { mount, umount, type MountCallOptions, type MountMethod, type MountResult, type UmountOptions } from './mount';
export { Mount, type MountInit, type UnmountOptions } from './handle';
export { mountPartition, type MountPartitionOptions } from './partition';
export * from './flags';
export { mapMountError, type MountErrorContext } from './errors';
export { findMounts, parseMountInfo, parseMountInfoLine, readMountInfo, unescapeMountField, type MountInfoEntry, type MountQuery } from './mountinfo';
export { MOUNT_API_ENV, probeMountApi, resolveMountApi, type ApiSupport, type MountApi, type MountApiSupport } from './new-api';
export { capabilities, IDMAP_PROBES, type Capabilities, type IdmapProbeFs } from './capabilities';
export { bindMount, type BindMountOptions } from './bind';
export {
  NamespaceMount,
  mountInNamespace,
  moveMountIntoNamespace,
  unmountInNamespace,
  type NamespaceUnmountOptions,
} from './in-namespace';
