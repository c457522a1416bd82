// The image model's constants, with Apptainer's numeric values so that Image JSON and
// partition types interoperate with pkg/image.

import { DESCRIPTOR_SIZE, HEADER_SIZE as SIF_HEADER_SIZE, MAX_DESCRIPTORS } from '../sif/constants';

/** Image and partition types (Apptainer: iota + 0x1000). */
export const SQUASHFS = 0x1000;
export const EXT3 = 0x1001;
export const SANDBOX = 0x1002;
export const SIF = 0x1003;
/** dm-crypt (LUKS) squashfs partition in a SIF. */
export const ENCRYPTSQUASHFS = 0x1004;
/** SIF FsRaw partition: no filesystem to mount. */
export const RAW = 0x1005;
/** gocryptfs-wrapped squashfs partition in a SIF. */
export const GOCRYPTFSSQUASHFS = 0x1006;

export type ImageType =
  | typeof SQUASHFS
  | typeof EXT3
  | typeof SANDBOX
  | typeof SIF
  | typeof ENCRYPTSQUASHFS
  | typeof RAW
  | typeof GOCRYPTFSSQUASHFS;

/** Usage bits: what a partition (and an image, as a gate) may be used for. */
export const RootFsUsage = 1;
export const OverlayUsage = 2;
export const DataUsage = 4;
export type Usage = number;

/** Name given to the root filesystem partition. */
export const RootFs = '!__rootfs__!';

/** SIF descriptor names Apptainer relies on. */
export const SIFDescOCIConfigJSON = 'oci-config.json';
export const SIFDescInspectMetadataJSON = 'inspect-metadata.json';

/** Driver feature bits (Apptainer 1.3+ values; ImageFeature = Squash|Ext3|Gocrypt). */
export const SquashFeature = 1;
export const Ext3Feature = 2;
export const GocryptFeature = 4;
export const ImageFeature = SquashFeature | Ext3Feature | GocryptFeature;
export const OverlayFeature = 8;
export const FuseFeature = 16;
export type DriverFeature = number;

/** Apptainer's "no fd" sentinel for Image.fd (all-ones uintptr). JSON carries it as this number. */
export const NO_FD = 2 ** 64 - 1;

/**
 * How much detection reads from the start of a file, in one read. Apptainer demanded exactly
 * 2048 bytes (so smaller files were "unknown"); we probe whatever a file holds up to this,
 * enough for a 2 KiB launch header followed by an ext superblock.
 */
export const PROBE_SIZE = 4096;

/**
 * Bytes read at the start of a SIF partition to check its filesystem: an ext superblock sits
 * at 1024 and is 1024 bytes long; a squashfs one is 96 bytes at 0.
 */
export const PARTITION_PROBE_SIZE = 2048;

/**
 * The most detection (`init`) reads from any file, whatever its headers claim: the first
 * PROBE_SIZE bytes, then for a SIF the 128-byte header, a descriptor table of at most
 * MAX_DESCRIPTORS × 585 bytes and one PARTITION_PROBE_SIZE read per partition it lists
 * (2,700,416 bytes, 2.6 MiB, in at most 3 + 1024 reads). Bare squashfs and ext3 images are
 * checked within the first PROBE_SIZE bytes.
 */
export const MAX_DETECTION_READ =
  PROBE_SIZE + SIF_HEADER_SIZE + MAX_DESCRIPTORS * (DESCRIPTOR_SIZE + PARTITION_PROBE_SIZE);

const typeNames: Record<number, string> = {
  [SQUASHFS]: 'squashfs',
  [EXT3]: 'ext3',
  [SANDBOX]: 'sandbox',
  [SIF]: 'sif',
  [ENCRYPTSQUASHFS]: 'encryptfs',
  [RAW]: 'raw',
  [GOCRYPTFSSQUASHFS]: 'gocryptfs',
};

/** Short name of an image or partition type ("squashfs", "ext3", ...), or "unknown(0x...)". */
export function typeName(type: number): string {
  return typeNames[type] ?? `unknown(0x${type.toString(16)})`;
}

/** Names of the usage bits set in `usage`, e.g. "rootfs|overlay". */
export function usageNames(usage: Usage): string {
  const names: string[] = [];
  if (usage & RootFsUsage) names.push('rootfs');
  if (usage & OverlayUsage) names.push('overlay');
  if (usage & DataUsage) names.push('data');
  return names.length ? names.join('|') : 'none';
}
