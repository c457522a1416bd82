// Mounting images: one partition (mountImage) or a container root with overlays (root).
export { mountImage, type MountImageOptions } from './mount-image';
export { root, type RootOptions, type MountedRoot, type OciRoot, type DataMount } from './root';
export { releaseMount } from './release';
export { cleanup, type CleanupOptions, type CleanupReport, type CleanupEntry } from './cleanup';
