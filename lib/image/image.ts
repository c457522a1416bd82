// The Image: an opened, recognised container image and the byte ranges inside it.
//
// It owns the fd that detection read (and that a loop device will later be attached
// from). close() releases the fd and with it the ext3 locks; it is idempotent and also
// available as `await using`.

import * as fs from 'node:fs';
import * as path from 'node:path';
import { ImgmountError } from '../errors';
import { authorizedGroup, authorizedOwner, authorizedPath } from './authorize';
import {
  DataUsage,
  ENCRYPTSQUASHFS,
  GOCRYPTFSSQUASHFS,
  NO_FD,
  OverlayUsage,
  RootFsUsage,
  type ImageType,
  type Usage,
} from './constants';
import { closeFdFrom } from '../io/fd';
import { sectionToJSON, type Section, type SectionJSON } from './section';
import type { ImageFileOwnership } from './open-file';
import type { MountedRoot, RootOptions } from '../root/types';

/** Image JSON with Apptainer's field names, so the two interoperate. */
export interface ImageJSON {
  partitions: SectionJSON[] | null;
  sections: SectionJSON[] | null;
  path: string;
  name: string;
  source: string;
  type: number;
  fd: number;
  writable: boolean;
  usage: number;
}

export interface ImageInit {
  partitions: Section[];
  sections: Section[];
  path: string;
  type: ImageType;
  fd: number;
  writable: boolean;
  usage: Usage;
  warnings?: string[];
  /** Whether close() closes the fd (false for an fd the caller keeps). */
  ownsFd?: boolean;
  /** @internal The fd came from a native call (openImage, openAs), not fs.open: it is closed the same way (see lib/io/fd.ts). */
  addonFd?: boolean;
  /** @internal Superblocks read at detection, by partition offset (at most PARTITION_PROBE_SIZE bytes each). */
  superblocks?: ReadonlyMap<number, Buffer> | undefined;
  /** @internal Owner and mode of the open file, from the stat of its open (see Image.openedOwnership). */
  ownership?: ImageFileOwnership | undefined;
}

/** @internal What Image.prototype.root() runs: root() of lib/root, which registers it when loaded. */
export type RootImplementation = (image: Image, target: string, options?: RootOptions) => Promise<MountedRoot>;

let rootImplementation: RootImplementation | undefined;

/**
 * @internal Called by lib/root/root.ts at load: the image model names the mounting layer's
 * types only, so that recognising images never loads it and nothing imports in a circle.
 */
export function registerRootImplementation(fn: RootImplementation): void {
  rootImplementation = fn;
}

// An image dropped without close(): close its fd (as FileHandle does) and say so.
const leakRegistry = new FinalizationRegistry<{ fd: number; path: string }>((held) => {
  process.emitWarning(`imgmount: image ${held.path} was garbage-collected without close(); closing fd ${held.fd}`, {
    code: 'IMGMOUNT_IMAGE_LEAK',
  });
  fs.close(held.fd, () => undefined);
});

export class Image {
  readonly partitions: readonly Section[];
  readonly sections: readonly Section[];
  /** Resolved absolute path. */
  readonly path: string;
  /** Basename of `path`. */
  readonly name: string;
  /** `/proc/self/fd/<fd>`: the path through which this exact open file can be reached. */
  readonly source: string;
  readonly type: ImageType;
  readonly fd: number;
  readonly writable: boolean;
  /**
   * Image-level usage gate: a partition is returned for a use only if both this and the
   * partition's allowedUsage have the bit. Callers may narrow it (an image used as an
   * overlay gets OverlayUsage), as Apptainer's engine does.
   */
  usage: Usage;
  /** Things that are odd but did not stop detection (skipped partitions, SIF diagnostics). */
  readonly warnings: readonly string[];

  #closed = false;
  #closing: Promise<void> | undefined;
  readonly #ownsFd: boolean;
  readonly #addonFd: boolean;
  readonly #superblocks: ReadonlyMap<number, Buffer>;
  readonly #ownership: ImageFileOwnership | undefined;

  /** @internal Images come from init(), fromJSON() and reInit(). */
  constructor(init: ImageInit) {
    this.partitions = Object.freeze([...init.partitions]);
    this.sections = Object.freeze([...init.sections]);
    this.path = init.path;
    this.name = path.basename(init.path);
    this.fd = init.fd;
    this.source = `/proc/self/fd/${init.fd}`;
    this.type = init.type;
    this.writable = init.writable;
    this.usage = init.usage;
    this.warnings = Object.freeze([...(init.warnings ?? [])]);
    this.#ownsFd = init.ownsFd ?? true;
    this.#addonFd = init.addonFd ?? false;
    this.#superblocks = init.superblocks ?? new Map();
    this.#ownership = init.ownership;
    if (this.#ownsFd) leakRegistry.register(this, { fd: this.fd, path: this.path }, this);
  }

  /** @internal The first `length` bytes of the partition at `offset`, if detection kept them. */
  cachedSuperblock(offset: number, length: number): Buffer | undefined {
    const b = this.#superblocks.get(offset);
    return b && b.length >= length ? b.subarray(0, length) : undefined;
  }

  /**
   * @internal Owner and mode of the image file as the stat of its open saw them (undefined
   * where the open did not report them). Only the owner (or root) can change them afterwards,
   * so a file that was root's and writable by no one else stays so unless root changes it.
   */
  get openedOwnership(): ImageFileOwnership | undefined {
    return this.#ownership;
  }

  /** True once close() was called. */
  get closed(): boolean {
    return this.#closed;
  }

  /** Throws ERR_IMAGE_CLOSED if the image was closed (its fd may already belong to something else). */
  assertOpen(): void {
    if (this.#closed) throw new ImgmountError('ERR_IMAGE_CLOSED', `image ${this.path} is closed`, { path: this.path });
  }

  #partitionsFor(usage: Usage): Section[] {
    if ((this.usage & usage) === 0) return [];
    return this.partitions.filter((p) => (p.allowedUsage & usage) !== 0);
  }

  /** Every partition usable for anything the image's usage allows. */
  getAllPartitions(): Section[] {
    return this.#partitionsFor(RootFsUsage | OverlayUsage | DataUsage);
  }

  getRootFsPartitions(): Section[] {
    return this.#partitionsFor(RootFsUsage);
  }

  getOverlayPartitions(): Section[] {
    return this.#partitionsFor(OverlayUsage);
  }

  getDataPartitions(): Section[] {
    return this.#partitionsFor(DataUsage);
  }

  /** The first root filesystem partition; ERR_NO_ROOTFS (with the reason, when known) if none. */
  getRootFsPartition(): Section {
    const p = this.getRootFsPartitions()[0];
    if (p) return p;
    const multiple = this.warnings.find((w) => w.includes('primary partitions'));
    throw new ImgmountError(
      'ERR_NO_ROOTFS',
      `no root filesystem found in ${this.path}` + (multiple ? `: ${multiple}` : ''),
      { path: this.path },
    );
  }

  /** "encryptfs" (dm-crypt/LUKS), "gocryptfs", or "" when the root filesystem is not encrypted. */
  encryptedRootFs(): 'encryptfs' | 'gocryptfs' | '' {
    for (const p of this.getRootFsPartitions()) {
      if (p.type === ENCRYPTSQUASHFS) return 'encryptfs';
      if (p.type === GOCRYPTFSSQUASHFS) return 'gocryptfs';
    }
    return '';
  }

  /** True if the root filesystem is encrypted (either kind). */
  hasEncryptedRootFs(): boolean {
    return this.encryptedRootFs() !== '';
  }

  /** True if the image lies inside one of `limitPaths` (after resolving symlinks). */
  authorizedPath(limitPaths: readonly string[]): Promise<boolean> {
    return authorizedPath(this.path, limitPaths);
  }

  /** True if the image file is owned by one of `owners` (user names or numeric uids). */
  authorizedOwner(owners: readonly string[]): Promise<boolean> {
    this.assertOpen();
    return authorizedOwner(this.fd, owners);
  }

  /** True if the image file's group is one of `groups` (group names or numeric gids). */
  authorizedGroup(groups: readonly string[]): Promise<boolean> {
    this.assertOpen();
    return authorizedGroup(this.fd, groups);
  }

  /**
   * Mounts the root filesystem at `target` as Apptainer's engine mounts a container's root:
   * returns the OCI runtime-spec Root and a handle that releases every mount it made. This is
   * root() of the mounting layer (lib/root), which registers itself here when it is loaded (the
   * package entry loads it). See RootOptions.
   */
  async root(target: string, options?: RootOptions): Promise<MountedRoot> {
    if (!rootImplementation) {
      throw new ImgmountError('ERR_DRIVER_REGISTRY', 'Image.root() needs the mounting layer, which registers itself when loaded: import the package (or lib/root)', {
        path: this.path,
      });
    }
    return rootImplementation(this, target, options);
  }

  toJSON(): ImageJSON {
    return {
      partitions: this.partitions.map(sectionToJSON),
      sections: this.sections.map(sectionToJSON),
      path: this.path,
      name: this.name,
      source: this.source,
      type: this.type,
      fd: this.#closed ? NO_FD : this.fd,
      writable: this.writable,
      usage: this.usage,
    };
  }

  /**
   * JSON text exactly as Apptainer writes it. Differs from JSON.stringify only for a closed
   * image, whose fd is the all-ones sentinel that a JS number cannot spell.
   */
  toJSONString(): string {
    const text = JSON.stringify(this);
    return this.#closed ? text.replace(/"fd":\d+(\.\d+)?(e\+\d+)?/, '"fd":18446744073709551615') : text;
  }

  /** Closes the fd (releasing the ext3 locks). Idempotent. */
  close(): Promise<void> {
    if (this.#closing) return this.#closing;
    this.#closed = true;
    leakRegistry.unregister(this);
    this.#closing = this.#ownsFd ? closeFdFrom(this.fd, this.#addonFd) : Promise.resolve();
    return this.#closing;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}
