// What a format probe gets and what it returns.

import type { ByteSource } from '../../io/byte-source';
import type { ImageType, Usage } from '../constants';
import type { FileKind } from '../open-file';
import type { Section } from '../section';

export interface ProbeContext {
  /** The open image (read-only during detection). */
  fd: number;
  kind: FileKind;
  /** Bytes in the file or block device. */
  size: number;
  /** The first bytes of the file (up to PROBE_SIZE; fewer for small files). */
  head: Buffer;
  /**
   * Every read beyond `head` goes through this (positional reads on `fd`), so what detection
   * reads can be counted; see MAX_DETECTION_READ for the bound.
   */
  source: ByteSource;
  /** Resolved path, for messages. */
  path: string;
}

export interface DetectedImage {
  type: ImageType;
  partitions: Section[];
  sections: Section[];
  /** Usage bits beyond RootFsUsage that the format adds (SIF overlay/data partitions). */
  extraUsage: Usage;
  warnings: string[];
  /** Whether the format can be opened for writing at all (squashfs cannot). */
  writable: boolean;
}

export interface ImageFormat {
  readonly name: string;
  /** Throws NotThisFormat for "not mine", any other error for "mine but unusable". */
  probe(ctx: ProbeContext): Promise<DetectedImage>;
}
