// Pinned paths: resolving a path once into an fd, without escaping its root, and acting on the fd.
export {
  PinnedDir,
  pinTarget,
  resolveInRoot,
  resolveBeneath,
  openFileBeneath,
  openMountRoot,
  umountPinned,
  type BeneathOptions,
} from './pinned';
export { SYSTEM_TARGETS, SYSTEM_SUBTREES, checkSystemTarget, systemTargetReason } from './system-targets';
