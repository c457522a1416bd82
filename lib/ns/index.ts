// User and mount namespaces: namespace fds, user namespaces with id maps, and mounting or
// starting programs inside other namespaces (through a single-threaded helper process).
export { NamespaceFd, openNamespace, type NamespaceRef, type NamespaceTarget, type NamespaceType } from './namespace';
export { createUserNamespace, type CreateUserNamespaceOptions, type IdMapRange } from './userns';
export {
  NamespaceMount,
  mountInNamespace,
  moveMountIntoNamespace,
  spawnInNamespaces,
  unmountInNamespace,
  type NamespaceUnmountOptions,
  type SpawnInNamespacesOptions,
} from './mount';
