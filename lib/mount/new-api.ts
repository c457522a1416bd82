// Which mount API: the new one (fsopen/fsconfig/fsmount/move_mount) where the kernel has it
// and no seccomp filter hides it, else mount(2). Probed once with harmless calls (fsopen(NULL),
// mount_setattr(-1, NULL, 0, NULL, 0)), memoised, and overridable with
// IMGMOUNT_MOUNT_API=auto|new|legacy (as LIBMOUNT_FORCE_MOUNT2 does for libmount).

import { native } from '../native/binding';
import { envChoice } from '../util/args';
import { debug } from '../util/debug';
import { isSystemError } from '../util/system-error';

export type MountApi = 'auto' | 'new' | 'legacy';
export const MOUNT_API_ENV = 'IMGMOUNT_MOUNT_API';
export const MOUNT_APIS = ['auto', 'new', 'legacy'] as const;

/** 'supported', 'missing' (ENOSYS: the kernel lacks it) or 'filtered' (EPERM on a harmless probe: seccomp). */
export type ApiSupport = 'supported' | 'missing' | 'filtered';

export interface MountApiSupport {
  newMountApi: ApiSupport;
  mountSetattr: ApiSupport;
}

const ENOSYS = 38;
const EPERM = 1;

function classify(errno: number): ApiSupport {
  return errno === ENOSYS ? 'missing' : errno === EPERM ? 'filtered' : 'supported';
}

let probeMemo: Promise<MountApiSupport> | undefined;

/** What this kernel (and any seccomp filter) lets us use; probed once per process. */
export function probeMountApi(): Promise<MountApiSupport> {
  probeMemo ??= native((b) => b.mountApiProbe()).then(
    (p) => {
      const r = { newMountApi: classify(p.fsopen), mountSetattr: classify(p.mountSetattr) };
      debug('mount API probe: fsopen errno %d, mount_setattr errno %d -> %j', p.fsopen, p.mountSetattr, r);
      return r;
    },
    (err) => {
      probeMemo = undefined;
      throw err;
    },
  );
  return probeMemo;
}

/** The API a mount uses now: forced by option or env, else what the probe allows. */
export async function resolveMountApi(requested: MountApi | undefined): Promise<'new' | 'legacy'> {
  const api = requested ?? envChoice(MOUNT_API_ENV, MOUNT_APIS, 'auto');
  if (api !== 'auto') return api;
  return (await probeMountApi()).newMountApi === 'supported' ? 'new' : 'legacy';
}

/**
 * A real fsopen failed with ENOSYS, or EPERM although the probe passed (a filter installed
 * later, e.g. by a sandbox): remember that the new API is unusable so that `auto` falls back.
 * Returns true when the caller should retry with mount(2).
 */
export function noteNewApiFailure(err: unknown, requested: MountApi | undefined): boolean {
  const api = requested ?? envChoice(MOUNT_API_ENV, MOUNT_APIS, 'auto');
  if (api !== 'auto' || !isSystemError(err, undefined, 'fsopen')) return false;
  if (err.code !== 'ENOSYS' && err.code !== 'EPERM') return false;
  // An EPERM from fsopen with a supported probe could be a real permission error (no
  // CAP_SYS_ADMIN); mount(2) will then fail with the same EPERM, which is the right report.
  const support: ApiSupport = err.code === 'ENOSYS' ? 'missing' : 'filtered';
  probeMemo = Promise.resolve({ newMountApi: support, mountSetattr: support });
  debug('mount API: fsopen %s, falling back to mount(2)', err.code);
  return true;
}
