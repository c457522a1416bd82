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
  /**
   * Optional: why the format cannot be this file, from what detection knows before reading
   * (its kind), or undefined. Detection skips probe() then, as if it had thrown NotThisFormat
   * with that reason: a format that says no to most files (sandbox: every file) costs no
   * error object on every init.
   */
  refuse?(ctx: Pick<ProbeContext, 'kind'>): string | undefined;
  /** Throws NotThisFormat for "not mine", any other error for "mine but unusable". */
  probe(ctx: ProbeContext): Promise<DetectedImage>;
}
