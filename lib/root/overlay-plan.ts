// The overlay plan of a root, as decisions of their inputs (no I/O): whether the root needs an
// overlay and which layers it has, in Apptainer's order; which layer is the writable one
// (tmpfs, the SIF's own ext3 overlay partition, an external overlay image or directory, or the
// root partition itself written in place); what of a mounted layer overlayfs gets; the session
// directories the layers are mounted on; the overlay's options and flags; and whether the
// kernel's overlayfs or fuse-overlayfs mounts it. root.ts does what this says.

import { ImgmountError } from '../errors';
import { EXT3, SANDBOX, SIF, SQUASHFS } from '../image/constants';
import type { Section } from '../image/section';
import { MS_NODEV, MS_NOSUID, MS_RDONLY } from '../mount/flags';

/** An external overlay as the caller named it (`RootOptions.overlays`). */
export type OverlayRequest = string | { path: string; writable?: boolean };

/** An external overlay: an image path or a directory, writable or not. */
export interface ExternalOverlay {
  path: string;
  writable: boolean;
}

/** What of the image the plan looks at. */
export interface PlannedImage {
  path: string;
  type: number;
  writable: boolean;
  getOverlayPartitions(): Section[];
}

export interface RootPlanInput {
  writable: boolean;
  writableTmpfs: boolean;
  overlays: readonly OverlayRequest[];
  /** Why the root partition cannot be written in place (`writableProblem`), undefined when it can. */
  rootWritableProblem: string | undefined;
  /** How many data partitions are mounted inside the root. */
  data: number;
  /** Whether the root goes to another mount namespace. */
  namespace: boolean;
  /** Whether an ID-mapped root was asked for. */
  idmap: boolean;
}

export interface RootPlan {
  external: ExternalOverlay[];
  /** The image's own ext3 overlay partitions (SIF), in order: applied on every run. */
  sifOverlays: Section[];
  /** The root partition itself is mounted writable (no overlay). */
  rootWritable: boolean;
  needsOverlay: boolean;
  /** Built here on a staging directory and moved into the namespace as a finished tree. */
  staged: boolean;
  /** Session subdirectories the root may mount layers on, in the order they are made. */
  layers: string[];
}

/**
 * Which layers a root has. Writable means, in this order of preference: an external overlay
 * opened writable, tmpfs, the image's first SIF overlay partition (the image opened writable),
 * or the root partition itself (an ext3 root or sandbox opened writable, with no overlay at all).
 * ERR_READ_ONLY_FS when `writable` finds none of them; ERR_IDMAP_UNSUPPORTED for an ID-mapped
 * root with an overlay.
 */
export function planRoot(image: PlannedImage, input: RootPlanInput): RootPlan {
  const { writable, writableTmpfs } = input;
  const external = input.overlays.map((o) => (typeof o === 'string' ? { path: o, writable: false } : { path: o.path, writable: o.writable ?? false }));
  // The image's own ext3 overlay partitions are applied on every run (read-only unless writing).
  const sifOverlays = image.type === SIF ? image.getOverlayPartitions().filter((p) => p.type === EXT3) : [];
  const rootWritable = writable && !input.rootWritableProblem && external.length === 0 && !writableTmpfs && sifOverlays.length === 0;
  const needsOverlay = writableTmpfs || external.length > 0 || (writable && !rootWritable) || sifOverlays.length > 0;
  if (writable && !rootWritable && !writableTmpfs && !external.some((e) => e.writable) && !(sifOverlays.length > 0 && image.writable)) {
    throw new ImgmountError(
      'ERR_READ_ONLY_FS',
      `no SIF writable overlay partition found in ${image.path}` +
        (image.writable ? '' : ' (open the image with init(path, true) to use one)') +
        '; use writableTmpfs, an overlay image, or an ext3 root or sandbox opened writable',
      { path: image.path },
    );
  }
  if (needsOverlay && input.idmap)
    throw new ImgmountError('ERR_IDMAP_UNSUPPORTED', 'ID-mapped roots cannot have overlays (overlayfs itself cannot be ID-mapped); mount the root without overlays');
  // A root with layers or data partitions for another mount namespace is built here on a
  // staging directory and its finished tree moved there; a plain one is mounted straight into it.
  const staged = input.namespace && (needsOverlay || input.data > 0);
  const layers = needsOverlay || staged ? layerNames(external.length, writableTmpfs, sifOverlays.length, staged) : [];
  return { external, sifOverlays, rootWritable, needsOverlay, staged, layers };
}

/** Session subdirectories a root may mount layers on, in the order they are made. */
function layerNames(external: number, writableTmpfs: boolean, sifOverlays: number, staged: boolean): string[] {
  return [
    ...(staged ? ['root'] : []),
    ...Array.from({ length: external }, (_, i) => `overlay-${i}`),
    ...(writableTmpfs ? ['tmpfs'] : []),
    ...Array.from({ length: sifOverlays }, (_, j) => `sif-overlay-${j}`),
    'lower',
  ];
}

/** One overlay partition's place in the overlay: the session directory it is mounted on, and whether it is the writable layer. */
export interface LayerSlot {
  name: string;
  writable: boolean;
}

/**
 * Partition `j` (of the overlay-capable ones) of external overlay `i`, opened as `overlayImage`.
 * Only the first partition of an overlay asked to be writable can be the writable layer, and
 * only if it is ext3 or a sandbox, its image was opened writable and no overlay before it took
 * the role; otherwise ERR_READ_ONLY_FS, with `problem` (`writableProblem` of the partition) as
 * the reason when there is one. Further partitions get their own directories.
 */
export function externalLayer(
  i: number,
  j: number,
  overlay: ExternalOverlay,
  overlayImage: { path: string; writable: boolean },
  part: Section,
  haveUpper: boolean,
  problem: string | undefined,
): LayerSlot {
  const rw = overlay.writable && j === 0 && !haveUpper && (part.type === EXT3 || part.type === SANDBOX) && overlayImage.writable;
  if (overlay.writable && j === 0 && !rw)
    throw new ImgmountError('ERR_READ_ONLY_FS', `overlay ${overlayImage.path} cannot be the writable layer: ${problem ?? 'another overlay already is'}`, { path: overlayImage.path });
  return { name: j === 0 ? `overlay-${i}` : `overlay-${i}-${j}`, writable: rw };
}

/**
 * The image's own SIF overlay partition `j`: writable only for the first one, when `writable`
 * was asked, the image was opened writable and no external overlay or tmpfs is the upper layer.
 */
export function sifOverlayLayer(j: number, haveUpper: boolean, writable: boolean, imageWritable: boolean): LayerSlot {
  return { name: `sif-overlay-${j}`, writable: !haveUpper && writable && imageWritable && j === 0 };
}

/**
 * What overlayfs gets of a mounted overlay partition: a squashfs is itself a (lower) layer;
 * the writable layer gives its upper/ and work/ directories (made when missing); a read-only
 * ext3 or sandbox gives its upper/ when it has one (an overlay image made by Apptainer), else
 * its whole tree.
 */
export function layerUse(part: Section, writable: boolean): 'whole' | 'upper-and-work' | 'upper-if-present' {
  if (part.type === SQUASHFS) return 'whole';
  return writable ? 'upper-and-work' : 'upper-if-present';
}

/** The directories inside a writable layer that overlayfs writes to, with the modes they are made with. */
export const UPPER_DIR = { name: 'upper', mode: 0o755 } as const;
export const WORK_DIR = { name: 'work', mode: 0o700 } as const;

/** Size of the tmpfs upper layer unless `tmpfsSize` says otherwise. */
export const DEFAULT_TMPFS_SIZE = '64m';

/** Our own tmpfs for the writable layer: nosuid, nodev, the size asked, a root directory of 0755. */
export function tmpfsLayer(size: string): { flags: number; options: string } {
  return { flags: MS_NOSUID | MS_NODEV, options: `size=${size},mode=0755` };
}

/**
 * The overlay mount: lower layers top-most first, then the upper and work directories when
 * there is a writable layer; nosuid, nodev, and read-only without one.
 */
export function overlayMount(lowers: readonly string[], upper: { upper: string; work: string } | undefined): { options: string[]; flags: number; readOnly: boolean } {
  const options = [`lowerdir=${lowers.map(escapeLayer).join(':')}`];
  if (upper) options.push(`upperdir=${escapeLayer(upper.upper)}`, `workdir=${escapeLayer(upper.work)}`);
  return { options, flags: MS_NOSUID | MS_NODEV | (upper ? 0 : MS_RDONLY), readOnly: !upper };
}

/** overlayfs splits lowerdir on ':' and options on ','; backslash-escape both (and the backslash). */
export function escapeLayer(p: string): string {
  return p.replace(/[\\:,]/g, (c) => `\\${c}`);
}

/**
 * Who mounts the overlay: the kernel's overlayfs when this process may mount, the kernel has
 * it, FUSE was not asked for and the writable layer is not on FUSE (the kernel's overlayfs
 * refuses a FUSE upper layer: no tmpfile, no RENAME_WHITEOUT); fuse-overlayfs otherwise.
 */
export function overlayDriver(facts: { privileged: boolean; filesystems: readonly string[]; driver: string | undefined; upperOnFuse: boolean }): 'kernel' | 'fuse-overlayfs' {
  return facts.privileged && facts.filesystems.includes('overlay') && facts.driver !== 'fuse' && !facts.upperOnFuse ? 'kernel' : 'fuse-overlayfs';
}
