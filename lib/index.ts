// imgmount: open container images and mount them on Linux.
export * from './errors';
export * from './image';
export { isReadOnlyFilesystem } from './image/read-only';
export * as sif from './sif';
export { loadSif, createSif, openSifWriter, SifWriter } from './sif';
export type { SifImage, SifHeader, SifDescriptor, SifObjectInput } from './sif';
export * from './loop';
export * from './mount';
export * from './ns';
export * from './drivers';
export * from './root';

// Types that appear in the signatures above, so that callers (and the API reference) can name them.
export type { ImageFormat, DetectedImage, ProbeContext } from './image/formats/format';
export type { Ext3CheckOptions } from './image/ext3';
export type { SquashfsCheckOptions } from './image/squashfs';
export type { ByteSource } from './io/byte-source';
export type { FileKind } from './image/open-file';
export type { NativeLoopInfo } from './native/binding';
export type { PinnedDir } from './path/pinned';
export type { HelperStdio } from './ns/helper';
export type { UnmountInNamespaceOptions } from './mount/in-namespace';
export type { Ability as DriverAbility } from './drivers/select';
export type { RecordOwner } from './drivers/mount-record';
export type { StopTimings } from './drivers/fuse/helper-process';
export type { FuseProgram, FuseBinaryOptions } from './drivers/fuse/binaries';
export type { ReleaseOptions as ReleaseFuseMountOptions } from './drivers/fuse/release';
export type { ReleaseOptions as ReleaseMountOptions } from './root/release';
