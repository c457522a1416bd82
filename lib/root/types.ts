// The types of root() that the image model names too (Image.prototype.root): a leaf that
// imports nothing at run time, so lib/image can name them without depending on lib/root.

import type { UserCredentials } from '../image/credentials';
import type { MountedFilesystem } from '../drivers/types';
import type { MountImageOptions } from './mount-image';

/** The OCI runtime-spec `root` object. */
export interface OciRoot {
  path: string;
  readonly: boolean;
}

export interface DataMount {
  /** The data partition, by name or SIF descriptor id. */
  partition: string | number;
  /** Where inside the root (an existing directory there). */
  path: string;
}

export interface RootOptions extends Omit<MountImageOptions, 'partition' | 'writable'> {
  /** Writable root: an ext3 root or sandbox opened writable, or the SIF's own overlay partition as upper layer. */
  writable?: boolean;
  /** Overlay with a throw-away tmpfs upper layer. */
  writableTmpfs?: boolean;
  /** tmpfs size for writableTmpfs (default 64m). */
  tmpfsSize?: string;
  /** External overlays: image paths or directories; an ext3 image or directory opened writable becomes the upper layer. */
  overlays?: Array<string | { path: string; writable?: boolean }>;
  /** Data partitions of the image to mount inside the root. */
  data?: DataMount[];
  /** Open overlay images and directories with this user's credentials (init's `as`): a user's overlay must be theirs to read (and write). */
  as?: UserCredentials;
  /** With `as`: accept an overlay path that leads to a block device (init's `allowBlockDevice`). */
  allowBlockDevice?: boolean;
}

export interface MountedRoot extends AsyncDisposable {
  /** The OCI runtime-spec Root: { path, readonly }. */
  readonly root: OciRoot;
  /** Every mount made, in the order they were made. */
  readonly mounts: readonly MountedFilesystem[];
  readonly closed: boolean;
  /** Unmounts everything in reverse order and removes the session directory. Idempotent; after a failure (a mount still busy) it can be called again. */
  close(): Promise<void>;
}
