// A mount and the helper serving it (a "layer"), as bring-up.ts makes it and tear-down.ts
// undoes it, and what both need from the driver.

import type { MountFunc } from '../../image/driver';
import type { NamespaceTarget } from '../../ns/namespace';
import type { PinnedDir } from '../../path/pinned';
import type { HelperProcess } from './helper-process';
import type { Step } from './plan';

/** A mount and the helper serving it. */
export interface Layer {
  helper: HelperProcess;
  /** Its name (pinned), path (self-mounted without root) or path inside `namespace`. */
  target: string;
  /** The mount point as an fd: unmounted through it. Owned by the layer. */
  pinned?: PinnedDir;
  fstype: string;
  how: 'fd' | 'self';
  /** The mount namespace the mount is in, when not ours. */
  namespace?: NamespaceTarget;
  /** Its mount id there (statx), where known: only that mount is unmounted. */
  mountId?: number | bigint;
  readOnly: boolean;
}

export interface ServeContext {
  mountFunc: MountFunc;
  /** fusermount3, for unmounting self-mounted layers without privilege. */
  fusermount: string | null;
  /** Marked in helpers' environment, so cleanup() finds one whose owner died before recording it. */
  ownerMark?: string;
  /** Helpers get SIGTERM when this process dies (PR_SET_PDEATHSIG). */
  dieWithOwner?: boolean;
  /**
   * Called once a helper runs (the driver records it); its synchronous part runs before anything
   * waits on the helper, and the mount is used only once it has resolved.
   */
  onStart?: (helper: HelperProcess, step: Step) => void | Promise<void>;
}
