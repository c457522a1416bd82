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
