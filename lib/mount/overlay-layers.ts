// Whether an overlay is built from detached mounts given by fd (fsconfig FSCONFIG_SET_FD
// "lowerdir+", "upperdir", "workdir", with layers that were never attached): then a
// tmpfs-overlay root is one native call with no layer in the mount tree (see OverlayAbove in
// ./partition.ts). Probed once per process, the way that call builds one; overridable with
// IMGMOUNT_OVERLAY_LAYERS=auto|fd|dirs ('dirs': layers on session directories, as on kernels
// without it; 'fd': no probe).

import { native } from '../native/binding';
import { envChoice } from '../util/args';
import { debug } from '../util/debug';

export const OVERLAY_LAYERS_ENV = 'IMGMOUNT_OVERLAY_LAYERS';
const CHOICES = ['auto', 'fd', 'dirs'] as const;

let memo: Promise<boolean> | undefined;

/** True when overlays are built over detached layers by fd here (a harmless probe, memoised; false where this process may not mount). */
export async function overlayLayersSupported(): Promise<boolean> {
  const forced = envChoice(OVERLAY_LAYERS_ENV, CHOICES, 'auto');
  if (forced !== 'auto') return forced === 'fd';
  memo ??= native((b) => b.overlayLayersProbe()).then(
    (r) => {
      debug('overlay over detached layers: %s', r.errno === 0 ? 'supported' : `no (${r.syscall}: errno ${r.errno})`);
      return r.errno === 0;
    },
    () => false,
  );
  return memo;
}
