// The image model: recognise images and describe their partitions (Apptainer's pkg/image).
export * from './constants';
export type { Section, SectionJSON } from './section';
export { Image, type ImageJSON } from './image';
export { init, imageFormats, type InitOptions } from './init';
export { validateCredentials, type UserCredentials } from './credentials';
export { fromJSON, reInit, type FromJSONOptions } from './from-json';
export { resolvePath } from './path';
export { checkSquashfsHeader, getSquashfsComp, squashfsCompressions, type SquashfsInfo } from './squashfs';
export { checkExt3Header, type Ext3Info } from './ext3';
export { parseLaunchHeader, type LaunchHeader } from './launch-header';
export { newPartitionReader, newSectionReader, readSection, type RangeReader } from './reader';
export { authorizedPath, pathContains } from './authorize';
export { registerDriver, getDriver, unregisterDriver, type Driver, type DriverParams, type MountParams, type MountFunc } from './driver';
export { hostArch, archRunnable } from './arch';
export { NotThisFormat, type FormatRejection } from './probe';
export { readPartitionInfo, type PartitionFsInfo } from './partition-info';
