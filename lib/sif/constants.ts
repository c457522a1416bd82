// SIF numeric constants and their display names (siftool's wording), per
// shared/docs/sif-format.md §3, §5, §6. Every table is total: values nobody knows map to a
// display name ("Unknown"/"unknown"), never to an error.

/** Global header length in bytes. */
export const HEADER_SIZE = 128;
/** One descriptor slot in bytes. */
export const DESCRIPTOR_SIZE = 585;
/** Where writers put the descriptor table. */
export const DEFAULT_DESCRIPTORS_OFFSET = 4096;
/** Descriptor slots a new image gets unless told otherwise. */
export const DEFAULT_DESCRIPTOR_CAPACITY = 48;
/**
 * Largest descriptor count loadSif accepts (and createSif creates): 1024 slots, a 599,040-byte
 * (585 KiB) table. Real images have 48, the Go library's default capacity (Apptainer and
 * SingularityCE builds, siftool); OCI-SIFs are created with one slot per OCI blob plus a few
 * spare, so even an image at Docker's 127-layer limit needs well under 200. The cap is what
 * bounds detection: the table is read in one piece and every partition it lists gets a header
 * read, so a hostile header claiming 2^20 slots (a 613 MB read on a sparse file) is refused
 * before anything is read or allocated for it.
 */
export const MAX_DESCRIPTORS = 1024;
/** Go's zero time.Time in Unix seconds: the "unset" marker of deterministic images. */
export const GO_ZERO_TIME = -62135596800;

export const LAUNCH_SCRIPT_SIZE = 32;
export const MAGIC = Buffer.from('SIF_MAGIC\0', 'latin1');
/** The only supported spec version: "01" + NUL. */
export const VERSION_01 = Buffer.from('01\0', 'latin1');
export const NAME_SIZE = 128;
export const EXTRA_SIZE = 384;
/** Signature extra: int32 hash type then a 256-byte entity whose first 20 bytes are a fingerprint. */
export const ENTITY_SIZE = 256;
export const FINGERPRINT_SIZE = 20;

/** Top 4 bits of GroupID / LinkedID: set on every group id, and on links that point at a group. */
export const GROUP_MASK = 0xf0000000;
export const DEFAULT_GROUP = 1;
/** Largest group number (the bits below GROUP_MASK). */
export const MAX_GROUP = 0x0fffffff;

// ---- data types (descriptor +0, int32) ----
export const DataDeffile = 0x4001;
export const DataEnvVar = 0x4002;
export const DataLabels = 0x4003;
export const DataPartition = 0x4004;
export const DataSignature = 0x4005;
export const DataGenericJSON = 0x4006;
export const DataGeneric = 0x4007;
export const DataCryptoMessage = 0x4008;
export const DataSBOM = 0x4009;
export const DataOCIRootIndex = 0x400a;
export const DataOCIBlob = 0x400b;

const dataTypeNames: Record<number, string> = {
  [DataDeffile]: 'Def.FILE',
  [DataEnvVar]: 'Env.Vars',
  [DataLabels]: 'JSON.Labels',
  [DataPartition]: 'FS',
  [DataSignature]: 'Signature',
  [DataGenericJSON]: 'JSON.Generic',
  [DataGeneric]: 'Generic/Raw',
  [DataCryptoMessage]: 'Cryptographic Message',
  [DataSBOM]: 'SBOM',
  [DataOCIRootIndex]: 'OCI.RootIndex',
  [DataOCIBlob]: 'OCI.Blob',
};

/** siftool's name for a data type; "Unknown" for values outside 0x4001..0x400B. */
export function dataTypeName(t: number): string {
  return dataTypeNames[t] ?? 'Unknown';
}

// ---- filesystem types (partition extra +0, int32) ----
export const FsSquash = 1;
export const FsExt3 = 2;
export const FsImmuObj = 3;
export const FsRaw = 4;
export const FsEncryptedSquashfs = 5;
/** Only defined by the apptainer/sif fork; sylabs tools show it as "Unknown". */
export const FsGocryptfsSquashfs = 6;

const fsTypeNames: Record<number, string> = {
  [FsSquash]: 'Squashfs',
  [FsExt3]: 'Ext3',
  [FsImmuObj]: 'Archive',
  [FsRaw]: 'Raw',
  [FsEncryptedSquashfs]: 'Encrypted squashfs',
  [FsGocryptfsSquashfs]: 'Gocryptfs squashfs',
};

export function fsTypeName(t: number): string {
  return fsTypeNames[t] ?? 'Unknown';
}

// ---- partition types (partition extra +4, int32). Note System = 1, PrimSys = 2. ----
export const PartSystem = 1;
export const PartPrimSys = 2;
export const PartData = 3;
export const PartOverlay = 4;

const partTypeNames: Record<number, string> = {
  [PartSystem]: 'System',
  [PartPrimSys]: '*System',
  [PartData]: 'Data',
  [PartOverlay]: 'Overlay',
};

export function partTypeName(t: number): string {
  return partTypeNames[t] ?? 'Unknown';
}

// ---- architectures (header +45 and partition extra +8: two ASCII digits + NUL) ----
/** Two-digit SIF code -> Go architecture name. "00" is unknown/none. */
export const ARCH_BY_CODE: Readonly<Record<string, string>> = Object.freeze({
  '00': 'unknown',
  '01': '386',
  '02': 'amd64',
  '03': 'arm',
  '04': 'arm64',
  '05': 'ppc64',
  '06': 'ppc64le',
  '07': 'mips',
  '08': 'mipsle',
  '09': 'mips64',
  '10': 'mips64le',
  '11': 's390x',
  '12': 'riscv64',
  '13': 'loong64',
});

/** Go architecture name -> two-digit SIF code (no entry for "unknown"). */
export const ARCH_CODE_BY_NAME: Readonly<Record<string, string>> = Object.freeze(
  Object.fromEntries(Object.entries(ARCH_BY_CODE).filter(([c]) => c !== '00').map(([c, n]) => [n, c])),
);

export const ARCH_UNKNOWN_CODE = '00';

/**
 * Go name of a 3-byte arch field. The whole field must match "NN\0" (as the Go reader compares
 * all 3 bytes), so "02" without its NUL is "unknown" too.
 */
export function archNameFromBytes(b: Uint8Array): string {
  if (b.length !== 3 || b[2] !== 0) return 'unknown';
  const code = String.fromCharCode(b[0]!, b[1]!);
  return ARCH_BY_CODE[code] ?? 'unknown';
}

/** The 3-byte field for a Go arch name, or undefined if the name has no SIF code. */
export function archBytesFromName(name: string): Buffer | undefined {
  const code = Object.prototype.hasOwnProperty.call(ARCH_CODE_BY_NAME, name) ? ARCH_CODE_BY_NAME[name] : undefined;
  return code === undefined ? undefined : Buffer.from(code + '\0', 'latin1');
}

// ---- signature hash types (signature extra +0, int32) ----
export const HashSHA256 = 1;
export const HashSHA384 = 2;
export const HashSHA512 = 3;
export const HashBLAKE2s256 = 4;
export const HashBLAKE2b256 = 5;

const hashTypeNames: Record<number, string> = {
  [HashSHA256]: 'SHA-256',
  [HashSHA384]: 'SHA-384',
  [HashSHA512]: 'SHA-512',
  [HashBLAKE2s256]: 'BLAKE2s-256',
  [HashBLAKE2b256]: 'BLAKE2b-256',
};

/** Go crypto.Hash name of a signature hash type; "unknown" outside 1..5 (Go errors only when asked). */
export function hashTypeName(t: number): string {
  return hashTypeNames[t] ?? 'unknown';
}

// ---- crypto message (extra +0 format, +4 message, int32 each) ----
export const FormatOpenPGP = 1;
export const FormatPEM = 2;
export const MessageClearSignature = 0x100;
export const MessageRSAOAEP = 0x200;

const formatTypeNames: Record<number, string> = { [FormatOpenPGP]: 'OpenPGP', [FormatPEM]: 'PEM' };
const messageTypeNames: Record<number, string> = {
  [MessageClearSignature]: 'Clear Signature',
  [MessageRSAOAEP]: 'RSA-OAEP',
};

export function formatTypeName(t: number): string {
  return formatTypeNames[t] ?? 'Unknown';
}

export function messageTypeName(t: number): string {
  return messageTypeNames[t] ?? 'Unknown';
}

// ---- SBOM formats (extra +0, int32) ----
export const SBOMFormatCycloneDXJSON = 1;
export const SBOMFormatCycloneDXXML = 2;
export const SBOMFormatGitHubJSON = 3;
export const SBOMFormatSPDXJSON = 4;
export const SBOMFormatSPDXRDF = 5;
export const SBOMFormatSPDXTagValue = 6;
export const SBOMFormatSPDXYAML = 7;
export const SBOMFormatSyftJSON = 8;

const sbomFormatNames: Record<number, string> = {
  [SBOMFormatCycloneDXJSON]: 'cyclonedx-json',
  [SBOMFormatCycloneDXXML]: 'cyclonedx-xml',
  [SBOMFormatGitHubJSON]: 'github-json',
  [SBOMFormatSPDXJSON]: 'spdx-json',
  [SBOMFormatSPDXRDF]: 'spdx-rdf',
  [SBOMFormatSPDXTagValue]: 'spdx-tag-value',
  [SBOMFormatSPDXYAML]: 'spdx-yaml',
  [SBOMFormatSyftJSON]: 'syft-json',
};

export function sbomFormatName(f: number): string {
  return sbomFormatNames[f] ?? 'unknown';
}
