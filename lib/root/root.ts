// root(): a container's root filesystem from an image, as the seed's ImageFormat.Root()
// gives it: the root partition mounted (read-only, nosuid, nodev), optionally under an
// overlay with a writable upper layer (tmpfs, the SIF's own ext3 overlay partition, or an
// external overlay image or directory), with data partitions mounted inside. Returns the OCI
// runtime-spec Root and one handle that releases everything in reverse order.
//
// Internal mounts (the lower and upper layers) live in a private session directory under
// IMGMOUNT_STATE_DIR, and a mount record names them, so `imgmount umount TARGET` from another
// process releases exactly what this built.

import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { debuglog } from 'node:util';
import { ImgmountError, hasErrorCode, invalidArgValue, throwIfAborted } from '../errors';
import { EXT3, OverlayUsage, SANDBOX, SQUASHFS } from '../image/constants';
import type { Image } from '../image/image';
import { init } from '../image/init';
import type { Section } from '../image/section';
import { currentMountNamespace, findMountRecord, removeMountRecord, removeSessionDir, saveMountRecord, stateDir } from '../drivers/mount-record';
import type { MountedFilesystem } from '../drivers/types';
import { capabilities } from '../mount/capabilities';
import { MS_NODEV, MS_NOSUID, MS_RDONLY } from '../mount/flags';
import { bindMount } from '../mount/bind';
import { MNT_DETACH } from '../mount/flags';
import { mount, umount } from '../mount/mount';
import { unmountInNamespace } from '../ns/mount';
import type { NamespaceTarget } from '../ns/namespace';
import { KernelMounted, kernelMountFunc, plainKernelMount } from '../drivers/kernel';
import { mountImage, writableProblem, type MountImageOptions } from './mount-image';

const debug = debuglog('imgmount');

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
}

export interface MountedRoot extends AsyncDisposable {
  /** The OCI runtime-spec Root: { path, readonly }. */
  readonly root: OciRoot;
  /** Every mount made, in the order they were made. */
  readonly mounts: readonly MountedFilesystem[];
  readonly closed: boolean;
  /** Unmounts everything in reverse order and removes the session directory. Idempotent. */
  close(): Promise<void>;
}

class Root implements MountedRoot {
  readonly mounts: MountedFilesystem[] = [];
  readonly images: Image[] = [];
  nested: MountedFilesystem[] = [];
  top: MountedFilesystem | undefined;
  sessionDir: string | undefined;
  recorded = false;
  #closing: Promise<void> | undefined;
  root: OciRoot;

  constructor(target: string) {
    this.root = { path: target, readonly: true };
  }

  get closed(): boolean {
    return this.#closing !== undefined;
  }

  close(): Promise<void> {
    this.#closing ??= this.#release();
    return this.#closing;
  }

  async #release(): Promise<void> {
    const errors: unknown[] = [];
    const attempt = async (fn: () => Promise<unknown>) => {
      try {
        await fn();
      } catch (err) {
        errors.push(err);
      }
    };
    // Data mounts first, then the root (overlay or partition), then the layers below it.
    for (const m of [...this.mounts].reverse()) await attempt(() => m.close());
    for (const img of this.images) await attempt(() => img.close());
    // Never recursive through a mount that failed to go: removeSessionDir stops at mount points.
    if (this.sessionDir) await attempt(() => removeSessionDir(this.sessionDir!));
    if (this.recorded) await attempt(() => removeMountRecord(this.root.path));
    if (errors.length === 1) throw errors[0];
    if (errors.length) throw new AggregateError(errors, `releasing the root at ${this.root.path} failed in ${errors.length} places`);
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

function findPartition(image: Image, which: string | number): Section {
  const p = typeof which === 'number' ? image.partitions.find((x) => x.id === which) : image.partitions.find((x) => x.name === which);
  if (!p) throw new ImgmountError('ERR_NO_PARTITION', `no data partition ${typeof which === 'number' ? `with id ${which}` : `"${which}"`} in ${image.path}`, { path: image.path });
  return p;
}

async function mkSession(): Promise<string> {
  const base = path.join(stateDir(), 'sessions');
  await fs.mkdir(base, { recursive: true, mode: 0o700 });
  return fs.mkdtemp(path.join(base, 'root-'));
}

/** Makes the upper/work directories overlayfs needs inside a writable layer. */
async function upperDirs(dir: string): Promise<{ upper: string; work: string }> {
  const upper = path.join(dir, 'upper');
  const work = path.join(dir, 'work');
  await fs.mkdir(upper, { recursive: true, mode: 0o755 });
  await fs.mkdir(work, { recursive: true, mode: 0o700 });
  return { upper, work };
}

/**
 * Mounts the root filesystem of `image` at `target` (with overlays and data partitions as
 * asked) and returns the OCI Root plus the handle that undoes it all.
 */
export async function root(image: Image, target: string, options: RootOptions = {}): Promise<MountedRoot> {
  image.assertOpen();
  throwIfAborted(options.signal);
  const abs = path.resolve(target);
  const rootPart = image.getRootFsPartition();
  const { writable = false, writableTmpfs = false, overlays = [], data = [], ...common } = options;
  const r = new Root(abs);
  try {
    // Which writable layer, if any: the root itself, tmpfs, the SIF's overlay partition, or an external overlay.
    const external = overlays.map((o) => (typeof o === 'string' ? { path: o, writable: false } : { path: o.path, writable: o.writable ?? false }));
    const sifOverlay = image.getOverlayPartitions().find((p) => p.type === EXT3 && image.writable);
    const rootWritable = writable && !writableProblem(image, rootPart) && external.length === 0 && !writableTmpfs;
    const needsOverlay = writableTmpfs || external.length > 0 || (writable && !rootWritable);
    if (writable && !rootWritable && !writableTmpfs && !external.some((e) => e.writable) && !sifOverlay) {
      throw new ImgmountError(
        'ERR_READ_ONLY_FS',
        `no SIF writable overlay partition found in ${image.path}` +
          (image.writable ? '' : ' (open the image with init(path, true) to use one)') +
          '; use writableTmpfs, an overlay image, or an ext3 root or sandbox opened writable',
        { path: image.path },
      );
    }
    if (!needsOverlay) {
      const m = await mountImage(image, abs, { ...common, partition: rootPart, writable: rootWritable });
      r.mounts.push(m);
      r.top = m;
      r.root = { path: abs, readonly: m.readOnly };
    } else {
      if (common.idmap !== undefined) throw new ImgmountError('ERR_IDMAP_UNSUPPORTED', 'ID-mapped roots cannot have overlays (overlayfs itself cannot be ID-mapped); mount the root without overlays');
      await assembleOverlay(image, abs, r, { ...common, rootPart, writable, writableTmpfs, external, sifOverlay, tmpfsSize: options.tmpfsSize ?? '64m' });
    }
    for (const d of data) {
      const part = findPartition(image, d.partition);
      const at = path.join(abs, path.resolve('/', d.path));
      const st = await fs.stat(at).catch(() => null);
      if (!st?.isDirectory()) throw invalidArgValue('data[].path', d.path, `must be an existing directory in the image (${at})`);
      const m = await mountImage(image, at, { ...common, partition: part, writable: false });
      r.mounts.push(m);
      r.nested.push(m);
    }
    if (r.sessionDir || r.nested.length) await record(r, options.namespace === undefined);
    return r;
  } catch (err) {
    await r.close().catch((e: unknown) => debug('cleanup after failed root(): %s', (e as Error).message));
    throw err;
  }
}

interface OverlayPlan extends Omit<MountImageOptions, 'partition' | 'writable'> {
  rootPart: Section;
  writable: boolean;
  writableTmpfs: boolean;
  external: Array<{ path: string; writable: boolean }>;
  sifOverlay: Section | undefined;
  tmpfsSize: string;
}

async function assembleOverlay(image: Image, target: string, r: Root, plan: OverlayPlan): Promise<void> {
  const { rootPart, writable, writableTmpfs, external, sifOverlay, tmpfsSize, ...common } = plan;
  const { namespace, ...local } = common; // layers are built here; only the overlay goes elsewhere
  r.sessionDir = await mkSession();
  const lowers: string[] = [];
  let upper: { upper: string; work: string } | undefined;
  // The kernel's overlayfs refuses a FUSE upper layer (no tmpfile / RENAME_WHITEOUT there).
  let upperOnFuse = false;

  // External overlays come first (top-most lower layers, or the upper layer).
  for (const [i, ov] of external.entries()) {
    const dir = path.join(r.sessionDir, `overlay-${i}`);
    await fs.mkdir(dir);
    const img = await init(ov.path, ov.writable);
    r.images.push(img);
    // Used as an overlay, an image offers its overlay-capable partitions (Apptainer's usage gate).
    img.usage = OverlayUsage;
    const part = img.getOverlayPartitions()[0];
    if (!part) throw new ImgmountError('ERR_NO_PARTITION', `${img.path} has no partition usable as an overlay`, { path: img.path });
    const rw = ov.writable && !upper && (part.type === EXT3 || part.type === SANDBOX) && img.writable;
    if (ov.writable && !rw) throw new ImgmountError('ERR_READ_ONLY_FS', `overlay ${img.path} cannot be the writable layer: ${writableProblem(img, part) ?? 'another overlay already is'}`, { path: img.path });
    // `trusted` vouches for `image` only: an overlay image gets the default rule for its own file.
    const m = await mountImage(img, dir, { ...local, trusted: false, partition: part, writable: rw });
    r.mounts.push(m);
    if (rw) upperOnFuse = m.driver === 'fuse';
    if (rw) upper = await upperDirs(dir);
    else lowers.push(part.type === SQUASHFS || !(await exists(path.join(dir, 'upper'))) ? dir : path.join(dir, 'upper'));
  }
  if (!upper && writableTmpfs) {
    const dir = path.join(r.sessionDir, 'tmpfs');
    await fs.mkdir(dir);
    await mount('tmpfs', dir, 'tmpfs', MS_NOSUID | MS_NODEV, `size=${tmpfsSize},mode=0755`);
    r.mounts.push(plainKernelMount(dir, 'tmpfs', false));
    upper = await upperDirs(dir);
  }
  if (!upper && writable && sifOverlay) {
    const dir = path.join(r.sessionDir, 'sif-overlay');
    await fs.mkdir(dir);
    const m = await mountImage(image, dir, { ...local, partition: sifOverlay, writable: true });
    r.mounts.push(m);
    upper = await upperDirs(dir);
    upperOnFuse = m.driver === 'fuse';
  }
  const lower = path.join(r.sessionDir, 'lower');
  await fs.mkdir(lower);
  r.mounts.push(await mountImage(image, lower, { ...local, partition: rootPart, writable: false }));
  lowers.push(lower);

  const opts = [`lowerdir=${lowers.map(escapeLayer).join(':')}`];
  if (upper) opts.push(`upperdir=${escapeLayer(upper.upper)}`, `workdir=${escapeLayer(upper.work)}`);
  const flags = MS_NOSUID | MS_NODEV | (upper ? 0 : MS_RDONLY);
  const caps = await capabilities();
  const privileged = plan.privileged ?? process.geteuid?.() === 0;
  const kernelOverlay = privileged && caps.filesystems.includes('overlay') && plan.driver !== 'fuse' && !upperOnFuse;
  let top: MountedFilesystem;
  if (namespace) {
    if (!kernelOverlay) {
      throw new ImgmountError(
        'ERR_NAMESPACE',
        'an overlay root in another mount namespace needs the kernel overlayfs (and root)' +
          (upperOnFuse ? ', which refuses an upper layer served by FUSE (fuse2fs); allowKernelExtfs: true (or trusted: true, for the image\'s own overlay partition) lets the kernel serve it' : ''),
      );
    }
    top = await overlayIntoNamespace(r, namespace, target, flags, opts.join(','), !upper);
  } else if (kernelOverlay) {
    await mount('overlay', target, 'overlay', flags, opts.join(','));
    top = plainKernelMount(target, 'overlay', !upper);
  } else {
    // Without the right to mount (or when FUSE is asked for): fuse-overlayfs.
    const { FuseDriver } = await import('../drivers/fuse/driver');
    const driver = new FuseDriver(plan.persist ? { persist: true } : {});
    await driver.start({ sessionPath: '', usernsFd: -1, fuseFd: -1 });
    top = await driver.mount(
      { source: 'fuse-overlayfs', target, filesystem: 'overlay', flags, offset: 0, size: 0, fsOptions: opts, ...(plan.signal ? { signal: plan.signal } : {}) },
      kernelMountFunc,
    );
  }
  r.mounts.push(top);
  r.top = top;
  r.root = { path: target, readonly: !upper };
}

/**
 * Builds the overlay here, on a staging directory, and moves a clone of it into the other
 * namespace (as detached mounts can be). The layers are then detached here: they live on as
 * references of that overlay and go away with it, so nothing of the root stays in ours.
 */
async function overlayIntoNamespace(r: Root, ns: NamespaceTarget, target: string, flags: number, data: string, readOnly: boolean): Promise<MountedFilesystem> {
  const staging = path.join(r.sessionDir!, 'root');
  await fs.mkdir(staging);
  await mount('overlay', staging, 'overlay', flags, data);
  try {
    await bindMount(staging, target, { namespace: ns, readOnly, recursive: false });
  } finally {
    await umount(staging, MNT_DETACH);
  }
  for (const m of r.mounts) await umount(m.target, MNT_DETACH).catch((err: unknown) => debug('detach %s: %s', m.target, (err as Error).message));
  await removeSessionDir(r.sessionDir!);
  r.sessionDir = undefined;
  return new KernelMounted(target, 'overlay', readOnly, null, async () => {
    try {
      await unmountInNamespace(ns, target);
    } catch (err) {
      // Unmounted there already, or the namespace is gone (and its mounts with it).
      if (!hasErrorCode(err, 'ERR_NOT_MOUNTED') && !hasErrorCode(err, 'ERR_NAMESPACE')) throw err;
    }
  });
}

function escapeLayer(p: string): string {
  // overlayfs splits lowerdir on ':' and options on ','; backslash-escape both.
  return p.replace(/[\\:,]/g, (c) => `\\${c}`);
}

async function exists(p: string): Promise<boolean> {
  return fs.stat(p).then(
    () => true,
    () => false,
  );
}

/** Writes the mount record that lets `imgmount umount TARGET` undo this root from anywhere. */
async function record(r: Root, local: boolean): Promise<void> {
  if (!local) return;
  // A FUSE top layer (fuse-overlayfs) already has a record under the same target: keep its
  // helpers and session directory in ours, which replaces it.
  const top = await findMountRecord(r.root.path);
  await saveMountRecord({
    target: r.root.path,
    mntns: await currentMountNamespace(),
    driver: r.mounts.some((m) => m.driver === 'fuse') ? 'fuse' : 'kernel',
    fstype: r.top?.fstype ?? 'unknown',
    helpers: top?.helpers ?? [], // FUSE lower layers keep their own records (see releaseMount)
    nestedMounts: r.nested.map((m) => m.target).reverse(),
    internalMounts: r.mounts.filter((m) => m !== r.top && !r.nested.includes(m)).map((m) => m.target).reverse(),
    ...(r.sessionDir ? { sessionDir: r.sessionDir } : {}),
    ...(top ? { moreSessionDirs: [top.sessionDir, ...(top.moreSessionDirs ?? [])].filter((d): d is string => Boolean(d)) } : {}),
    created: new Date().toISOString(),
  });
  r.recorded = true;
}
