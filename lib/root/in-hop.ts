// root() in one native call, where the root allows it: the root partition alone, or under an
// overlay with a fresh tmpfs as its writable layer, in our mount namespace, by the kernel
// driver. The call (native/attach-mount.cc) opens the target (`pin`), checks that the image
// file still has the owner and mode the driver was chosen by, writes the record's intent,
// binds the loop device and mounts; for the tmpfs root it also builds the overlay from
// detached layers (no session directory, no layer in the mount tree: the layers live exactly
// as long as the overlay, so the unmount releases everything and removes the record).
//
// Anything the call cannot do (FUSE, a target pinTarget() must resolve or refuse, a record
// there already, a shared loop device, a kernel without overlays over detached layers...) is a
// PinDeclined with nothing done: root() then takes its general path, which does it or says
// what is wrong in its own order.

import type { Image } from '../image/image';
import type { Section } from '../image/section';
import { chooseDriver } from '../drivers/select';
import { recordWrite, type MountRecord } from '../drivers/mount-record';
import type { MountedFilesystem } from '../drivers/types';
import { hostFilesystems } from '../mount/host-filesystems';
import { overlayLayersSupported } from '../mount/overlay-layers';
import { PinDeclined, type OverlayAbove } from '../mount/partition';
import type { PinnedDir } from '../path/pinned';
import { targetPinRequest } from '../path/pinned';
import { debug } from '../util/debug';
import { mountImageInHop, type MountImageOptions } from './mount-image';
import { UPPER_DIR, WORK_DIR, overlayDriver, overlayMount, tmpfsLayer } from './overlay-plan';
import type { OciRoot, RootOptions } from './types';

/** What of the root being built the one-hop path fills in. */
export interface InHopRoot {
  readonly root: OciRoot;
  mounts: MountedFilesystem[];
  top: MountedFilesystem | undefined;
  recorded: boolean;
  record: MountRecord | undefined;
  /** The pinned target whose unmount removes the record. */
  recordGoesWith: PinnedDir | undefined;
}

export interface InHopPlan {
  image: Image;
  rootPart: Section;
  /** Options of the root partition's mount. */
  local: Omit<MountImageOptions, 'partition' | 'writable'>;
  rootWritable: boolean;
  /** With a tmpfs of this size as the writable layer of an overlay over the root partition. */
  tmpfsSize?: string;
  /** Makes the record (as r.record) without writing it. */
  intentRecord: () => Promise<MountRecord>;
  options: Pick<RootOptions, 'driver' | 'privileged'>;
}

/** Mounts the root in one native call and fills `r`; false, with nothing done, where it cannot. */
export async function mountRootInHop(r: InHopRoot, plan: InHopPlan): Promise<boolean> {
  const { image, rootPart, local } = plan;
  const file = image.openedOwnership;
  if (!file) return false;
  const facts = await Promise.all([chooseDriver(image, rootPart, local, { file }), targetPinRequest(r.root.path), overlayAbove(plan)]).catch(() => null);
  if (!facts || facts[0].driver !== 'kernel' || !facts[1] || facts[2] === null) return false;
  const [driverChoice, pin, overlay] = facts;
  const record = await plan.intentRecord();
  const intent = await recordWrite(record);
  let m: MountedFilesystem;
  try {
    m = await mountImageInHop(
      image,
      { pin: { ...pin, imageOwner: { fd: image.fd, ...file }, intent }, onPinned: (dir) => (r.recordGoesWith = dir) },
      { ...local, partition: rootPart, writable: overlay ? false : plan.rootWritable, recordAs: 'merge', mergeInto: record, driverChoice },
      overlay,
    );
  } catch (err) {
    if (!(err instanceof PinDeclined)) throw err;
    debug('root at %s: %s', r.root.path, err.message);
    r.record = undefined;
    return false;
  }
  r.recorded = true;
  r.mounts.push(m);
  r.top = m;
  r.root.readonly = m.readOnly;
  return true;
}

/** The tmpfs overlay the plan asks for (undefined: none asked), or null where this call cannot build it. */
async function overlayAbove(plan: InHopPlan): Promise<OverlayAbove | undefined | null> {
  if (plan.tmpfsSize === undefined) return undefined;
  const host = await hostFilesystems();
  const privileged = plan.options.privileged ?? process.geteuid?.() === 0;
  if (overlayDriver({ privileged, filesystems: host.filesystems, driver: plan.options.driver, upperOnFuse: false }) !== 'kernel') return null;
  if (!(await overlayLayersSupported())) return null;
  const tmpfs = tmpfsLayer(plan.tmpfsSize);
  // The flags overlayMount gives any writable overlay; its layers are the call's fds.
  const { flags } = overlayMount([], { upper: '', work: '' });
  return { tmpfs: { flags: tmpfs.flags, data: tmpfs.options, dirs: [[UPPER_DIR.name, UPPER_DIR.mode], [WORK_DIR.name, WORK_DIR.mode]] }, flags };
}
