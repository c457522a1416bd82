// User and mount namespaces: namespace fds, user namespaces with id maps, and starting
// programs inside other namespaces (through a single-threaded helper process). Mounting into
// other namespaces is lib/mount's (in-namespace.ts), built on these.
export { NamespaceFd, openNamespace, type NamespaceRef, type NamespaceTarget, type NamespaceType } from './namespace';
export { createUserNamespace, type CreateUserNamespaceOptions, type IdMapRange } from './userns';
export { spawnInNamespaces, type SpawnInNamespacesOptions } from './spawn';
