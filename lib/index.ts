// imgmount: open container images and mount them on Linux.
export * from './errors';
export * from './image';
export { isReadOnlyFilesystem } from './image/read-only';
