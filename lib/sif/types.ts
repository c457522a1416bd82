// Decoded SIF structures. Numbers are plain JS numbers (loadSif has checked that sizes and
// offsets are below 2^53); the raw on-disk bytes ride along so that nothing is lost when an
// image is rewritten or its integrity digests are computed.

/** Where a descriptor's LinkedID points: an object, a group, or nowhere (null). */
export type SifLink = { type: 'object'; id: number } | { type: 'group'; id: number };

/** The 128-byte global header. */
export interface SifHeader {
  /** Launch script with trailing NULs trimmed ("" when unset). */
  launchScript: string;
  /** The raw 32-byte launch script field. */
  launchScriptBytes: Buffer;
  /** Spec version text, always "01" for a loaded image. */
  version: string;
  /** Primary architecture as the Go name ("amd64"), "unknown" for "00" or anything unrecognised. */
  arch: string;
  /** The arch field as text, trailing NULs trimmed (e.g. "02"). */
  archCode: string;
  /** Image UUID (lowercase, dashed), or null for the all-zero "unset" UUID. */
  uuid: string | null;
  /** The raw 16 UUID bytes. */
  uuidBytes: Buffer;
  /** Unix seconds, or null for Go's zero time (deterministic images). 0 is a real time. */
  createdAt: number | null;
  modifiedAt: number | null;
  descriptorsFree: number;
  descriptorsTotal: number;
  descriptorsOffset: number;
  descriptorsSize: number;
  dataOffset: number;
  dataSize: number;
  /** The 128 header bytes as read (or as the writer last wrote them). */
  raw: Buffer;
}

export interface SifPartitionInfo {
  fsType: number;
  /** siftool name: Squashfs, Ext3, Archive, Raw, Encrypted squashfs, Gocryptfs squashfs, Unknown. */
  fsTypeName: string;
  partType: number;
  /** siftool name: System, *System (primary), Data, Overlay, Unknown. */
  partTypeName: string;
  /** Go arch name, "unknown" if not recognised. */
  arch: string;
  /** The arch field as text, trailing NULs trimmed. */
  archCode: string;
}

export interface SifSignatureInfo {
  hashType: number;
  /** Go crypto.Hash name (SHA-256, ...), "unknown" outside 1..5. */
  hashTypeName: string;
  /** OpenPGP v4 fingerprint as 40 uppercase hex digits, or null when the 20 bytes are zero (DSSE). */
  fingerprint: string | null;
}

export interface SifCryptoMessageInfo {
  format: number;
  formatName: string;
  message: number;
  messageName: string;
}

export interface SifSBOMInfo {
  format: number;
  formatName: string;
}

/** One used descriptor slot. */
export interface SifDescriptor {
  /** Slot index in the table (0-based). Writers give ID = slot + 1, but readers must not rely on it. */
  slot: number;
  id: number;
  dataType: number;
  /** siftool name of the data type ("Unknown" for unrecognised values). */
  dataTypeName: string;
  /** Group number with the mask cleared; 0 = not in a group. */
  groupId: number;
  /** GroupID as stored (normally 0xF0000000 | group). */
  groupIdRaw: number;
  link: SifLink | null;
  /** LinkedID as stored. */
  linkedIdRaw: number;
  offset: number;
  size: number;
  /** Informational only; inconsistent in old files. Never validated. */
  sizeWithPadding: number;
  /** Unix seconds, or null for Go's zero time. */
  createdAt: number | null;
  modifiedAt: number | null;
  /** Deprecated creator uid/gid (v1-era writers stored real ones). Part of the integrity digest. */
  uid: number;
  gid: number;
  /** Name with trailing NULs trimmed, decoded as UTF-8 (an embedded NUL survives, as in Go). */
  name: string;
  /** The raw 128-byte name field. */
  nameBytes: Buffer;
  /** The raw 384-byte type-specific field. */
  extra: Buffer;
  /** Decoded extras, present according to dataType. */
  partition?: SifPartitionInfo;
  signature?: SifSignatureInfo;
  cryptoMessage?: SifCryptoMessageInfo;
  sbom?: SifSBOMInfo;
  /** OCI.RootIndex / OCI.Blob: the digest text up to the first NUL (not validated here). */
  ociDigest?: string;
  /** The 585 slot bytes as read (or as the writer last wrote them). */
  raw: Buffer;
}

export interface SifImage {
  header: SifHeader;
  /** Used slots only, in slot order. */
  descriptors: SifDescriptor[];
  /** Things that are odd but not fatal (see sif-format.md §8). */
  warnings: string[];
  /** Length of the data the image was loaded from. */
  size: number;
}
