// root(): a container's root filesystem from an image, as Apptainer's engine mounts it
// (container_linux.go): the root partition mounted (read-only, nosuid, nodev), optionally
// under an overlay with a writable upper layer (tmpfs, the SIF's own ext3 overlay partition,
// or an external overlay image or directory), with data partitions mounted inside. Returns the
// OCI runtime-spec Root and one handle that releases everything in reverse order.
//
// Internal mounts (the lower and upper layers) live in a private session directory under
// IMGMOUNT_STATE_DIR, and a mount record names them, so `imgmount umount TARGET` from another
// process releases exactly what this built.

import * as path from 'node:path';
import { debug } from '../util/debug';
import { ImgmountError, hasErrorCode, invalidArgValue } from '../errors';
import { Admission, OPERATIONS_IN_FLIGHT } from '../util/admission';
import { checkpoint } from '../util/checkpoint';
import { RetryableOnce } from '../util/once';
import { native } from '../native/binding';
import { PinnedDir, openMountRoot, pinOwnDir, pinTarget, resolveBeneath, resolveInRoot } from '../path/pinned';
import { OverlayUsage } from '../image/constants';
import { registerRootImplementation, type Image } from '../image/image';
import { init } from '../image/init';
import type { Section } from '../image/section';
import { checkedRecordFile, currentMountNamespace, entryProcess, removeMountRecord, removeSessionDir, saveMountRecord, sessionsDir, thisOwner, type MountRecord } from '../drivers/mount-record';
import type { MountedFilesystem } from '../drivers/types';
import type { FuseMountParams } from '../drivers/fuse/driver';
import { hostFilesystems } from '../mount/host-filesystems';
import { chooseDriver, type DriverChoice } from '../drivers/select';
import { bindMount } from '../mount/bind';
import { MNT_DETACH } from '../mount/flags';
import { mount, umount } from '../mount/mount';
import { unmountInNamespace } from '../mount/in-namespace';
import { mountNamespaceInode, type NamespaceTarget } from '../ns/namespace';
import { KernelMounted, kernelMountFunc, plainKernelMount } from '../drivers/kernel';
import { expectedFstypes, mountImage, writableProblem, type MountImageOptions } from './mount-image';
import { mountRootInHop } from './in-hop';
import { DEFAULT_TMPFS_SIZE, UPPER_DIR, WORK_DIR, externalLayer, layerUse, overlayDriver, overlayMount, planRoot, sifOverlayLayer, tmpfsLayer } from './overlay-plan';
import { uniqueSuffix } from '../util/unique';
import type { DataMount, MountedRoot, OciRoot, RootOptions } from './types';

export type { DataMount, MountedRoot, OciRoot, RootOptions } from './types';

class Root implements MountedRoot {
  readonly mounts: MountedFilesystem[] = [];
  readonly images: Image[] = [];
  nested: MountedFilesystem[] = [];
  top: MountedFilesystem | undefined;
  sessionDir: string | undefined;
  /** Whether sessionDir exists yet (it is named in the record before it is made). */
  sessionMade = false;
  /** Layer directories made (and pinned) ahead, by name, until a mount takes one over. */
  readonly madeDirs = new Map<string, PinnedDir>();
  /** Every layer directory made in the session directory, by name. */
  readonly dirsMade: string[] = [];
  /** The record, written before the first mount (see intend()). */
  record: MountRecord | undefined;
  recorded = false;
  /** The pinned target whose unmount removes the record in the same hop (a plain kernel root). */
  recordGoesWith: PinnedDir | undefined;
  /** The pinned target until the top mount takes it over. */
  target: PinnedDir | undefined;
  /** fds that pin layers while the root is built (they keep mounts busy): closed once built. */
  readonly transient: PinnedDir[] = [];
  /** A failed release (a mount still busy) can be tried again; a success is final. */
  readonly #closing = new RetryableOnce();
  root: OciRoot;

  constructor(target: string) {
    this.root = { path: target, readonly: true };
  }

  get closed(): boolean {
    return this.#closing.started;
  }

  close(): Promise<void> {
    return this.#closing.run(() => releases.run(() => this.#release()));
  }

  async closeTransient(): Promise<void> {
    const open = [...this.transient.splice(0), ...this.madeDirs.values()];
    this.madeDirs.clear();
    await Promise.all(open.map((d) => d.close()));
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
    await this.closeTransient();
    // The top (overlay or partition) after what is mounted inside it, newest first; then the
    // layers below it, which no longer depend on each other, all at once.
    const all = [...this.mounts].reverse();
    const split = this.top ? all.indexOf(this.top) + 1 : all.length;
    for (const m of all.slice(0, split)) await attempt(() => m.close());
    await Promise.all(all.slice(split).map((m) => attempt(() => m.close())));
    for (const img of this.images) await attempt(() => img.close());
    await this.target?.close();
    // Never recursive through a mount that failed to go: removeSessionDir stops at mount points.
    // The record goes last, and only once everything it describes is gone (a kill before leaves
    // it for cleanup()): with the session directory's removal when that is the last step.
    let recordGone = this.recordGoesWith?.removedOnUnmount === true;
    if (this.sessionDir) {
      const recordFile = this.recorded && errors.length === 0 ? (checkedRecordFile(this.record!.target, this.record!.mntns) ?? undefined) : undefined;
      await attempt(async () => {
        recordGone = (await removeSessionDir(this.sessionDir!, this.dirsMade, recordFile)) || recordGone;
      });
    }
    if (this.recorded && errors.length === 0 && !recordGone) await attempt(() => removeMountRecord(this.record!.target, this.record!.mntns));
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

/**
 * The session directory and the given layer directories (ours: root's, 0700 above them), made
 * and pinned in one hop; the session directory is made with the first call.
 */
async function makeLayerDirs(r: Root, names: readonly string[]): Promise<void> {
  r.sessionDir ??= path.join(await sessionsDir(), `root-${uniqueSuffix()}`);
  const wanted = names.filter((n) => !r.madeDirs.has(n));
  const entries = [
    ...(r.sessionMade ? [] : [{ path: r.sessionDir, mode: 0o700, pin: false }]),
    ...wanted.map((n) => ({ path: path.join(r.sessionDir!, n), mode: 0o755, pin: true })),
  ];
  if (entries.length === 0) return;
  const made = await native((b) => b.makeDirs(entries));
  r.sessionMade = true;
  r.dirsMade.push(...wanted);
  made.slice(made.length - wanted.length).forEach((info, i) => r.madeDirs.set(wanted[i]!, new PinnedDir(info!)));
}

/** A layer's directory in the session, pinned: made now unless made ahead; the caller owns it. */
async function layerDir(r: Root, name: string): Promise<PinnedDir> {
  if (!r.madeDirs.has(name)) await makeLayerDirs(r, [name]);
  const dir = r.madeDirs.get(name)!;
  r.madeDirs.delete(name);
  return dir;
}

/** A layer not planned when the record was written (an overlay image's further partitions): named in it before it is made. */
async function planLayer(r: Root, name: string): Promise<void> {
  const p = path.join(r.sessionDir!, name);
  if (!r.record || r.record.internalMounts.includes(p)) return;
  r.record.internalMounts = [p, ...r.record.internalMounts];
  await saveMountRecord(r.record);
}

/**
 * Intent first: the record names everything this root may create (its session directory and
 * every layer's mount point, the target) before any of it exists, so a process killed at any
 * moment leaves either nothing or a record of all it left (cleanup() sweeps it). Data mounts
 * are added as they are resolved; the record is removed last.
 */
async function intend(r: Root, options: RootOptions, layers: string[], expect: string[] | undefined): Promise<void> {
  await intentRecord(r, options, layers, expect);
  // Exclusive: a target another mount holds (a record there) is ERR_TARGET_IN_USE, nothing made.
  await saveMountRecord(r.record!, { exclusive: true });
  r.recorded = true;
}

/** The record intend() writes, made (as r.record) but not written. */
async function intentRecord(r: Root, options: RootOptions, layers: string[], expect: string[] | undefined): Promise<MountRecord> {
  const ns = options.namespace;
  const own = await currentMountNamespace();
  if (layers.length > 0) r.sessionDir ??= path.join(await sessionsDir(), `root-${uniqueSuffix()}`);
  const enter = ns ? await entryProcess(ns) : undefined;
  // Fields set one by one, in the order the file shows them (no object spreads: this runs on every root).
  const record = {
    target: r.root.path,
    mntns: ns ? await mountNamespaceInode(ns) : own,
    driver: options.driver === 'fuse' ? 'fuse' : 'kernel',
    fstype: expect?.[0] ?? 'unknown',
    helpers: [],
    nestedMounts: [],
    internalMounts: layers.map((l) => path.join(r.sessionDir!, l)).reverse(),
  } as Omit<MountRecord, 'created'> & { created?: string; internalMntns?: string; enter?: { pid: number; startTime: string } };
  if (r.sessionDir) record.sessionDir = r.sessionDir;
  if (ns) record.internalMntns = own;
  if (enter) record.enter = enter;
  if (!options.persist) record.owner = await thisOwner();
  if (expect) record.expectFstype = expect.join(',');
  record.created = new Date().toISOString();
  r.record = record as MountRecord;
  return r.record;
}

/**
 * The upper/work directories overlayfs needs inside a writable layer that came from an image
 * or a directory someone else controls: created or found strictly inside the layer, never
 * through a symlink (ERR_UNSAFE_PATH), and handed to overlayfs as pinned fds.
 */
async function pinnedUpperDirs(r: Root, layer: PinnedDir): Promise<{ upper: string; work: string }> {
  const upper = await resolveBeneath(layer, UPPER_DIR.name, { create: UPPER_DIR.mode });
  r.transient.push(upper);
  const work = await resolveBeneath(layer, WORK_DIR.name, { create: WORK_DIR.mode });
  r.transient.push(work);
  return { upper: upper.procPath, work: work.procPath };
}

/** The root of the layer mounted on a session directory (a path of ours; the lookup enters the mount). */
async function layerRoot(r: Root, dir: string): Promise<PinnedDir> {
  const d = await pinOwnDir(dir);
  r.transient.push(d);
  return d;
}

/**
 * Mounts the root filesystem of `image` at `target` (with overlays and data partitions as
 * asked) and returns the OCI Root plus the handle that undoes it all.
 *
 * The target is pinned once (a system directory is ERR_UNSAFE_TARGET) and every mount lands
 * on fds: the root on the pinned target, data partitions on directories resolved inside the
 * mounted root (a symlink in the image never leads out of it), overlay layers from images or
 * directories by fds of their upper/work directories (never through a symlink).
 */
export function root(image: Image, target: string, options: RootOptions = {}): Promise<MountedRoot> {
  return builds.run(() => buildRoot(image, target, options), options.signal);
}

/** At most OPERATIONS_IN_FLIGHT roots built, and as many released, at once (see util/admission.ts). */
const builds = new Admission(OPERATIONS_IN_FLIGHT);
const releases = new Admission(OPERATIONS_IN_FLIGHT);

// Image.prototype.root() is this function: the image model does not import the mounting layer,
// the mounting layer registers itself there when it is loaded (lib/index.ts loads it).
registerRootImplementation(root);

async function buildRoot(image: Image, target: string, options: RootOptions): Promise<MountedRoot> {
  image.assertOpen();
  const signal = options.signal;
  checkpoint('root:start', signal);
  const rootPart = image.getRootFsPartition();
  const { writable = false, writableTmpfs = false, overlays = [], data = [], ...common } = options;
  const ns = options.namespace;
  const r = new Root(path.resolve(target));
  try {
    // Which writable layer, if any: the root itself, tmpfs, the SIF's overlay partition, or an
    // external overlay; which layers; whether built on a staging directory (see overlay-plan.ts).
    const { external, sifOverlays, rootWritable, needsOverlay, staged, layers } = planRoot(image, {
      writable,
      writableTmpfs,
      overlays,
      rootWritableProblem: writableProblem(image, rootPart),
      data: data.length,
      namespace: ns !== undefined,
      idmap: common.idmap !== undefined,
    });
    // Where the root is built: the caller's directory, pinned, or the staging directory.
    const { namespace: _ns, ...here } = common;
    const local: Omit<MountImageOptions, 'partition' | 'writable'> = staged ? here : common;
    const expect = expectedFstypes(rootPart, needsOverlay);
    // A plain root, or one under a tmpfs overlay, in one native call where it can be.
    const tmpfsOnly = needsOverlay && writableTmpfs && external.length === 0 && sifOverlays.length === 0;
    if (!ns && data.length === 0 && (!needsOverlay || tmpfsOnly)) {
      const plan = {
        image,
        rootPart,
        local,
        rootWritable,
        ...(tmpfsOnly ? { tmpfsSize: options.tmpfsSize ?? DEFAULT_TMPFS_SIZE } : {}),
        intentRecord: () => intentRecord(r, options, [], expect),
        options,
      };
      if (await mountRootInHop(r, plan)) {
        checkpoint('root:mounted', signal);
        checkpoint('root:built', signal);
        return r;
      }
    }
    let at: PinnedDir | string;
    // A plain root: its driver is chosen (an fstat of the image) while the target is pinned and
    // the record written, instead of after them.
    const choosing = chooseDriver(image, rootPart, local);
    choosing.catch(() => undefined); // awaited below; a failure before that is not unhandled
    if (!ns) {
      // The target is pinned while the record is written (both before any mount, so intent
      // still comes first), under the name the caller gave; a target reached through a symlink
      // has another name, and its record is rewritten under that before anything is mounted.
      const named = path.resolve(target);
      const [pinned, recorded] = await Promise.allSettled([pinTarget(target), intend(r, options, layers, expect)]);
      if (pinned.status === 'fulfilled') r.target = pinned.value;
      if (pinned.status === 'rejected') throw pinned.reason;
      if (recorded.status === 'rejected') throw recorded.reason;
      checkpoint('root:pinned', signal);
      if (r.target!.path !== named) {
        // The first write under the real name, so exclusive too: another mount may hold the
        // target under that name (or another link to it). Until it succeeds there is no record
        // of ours to remove.
        await removeMountRecord(named, r.record!.mntns);
        r.recorded = false;
        r.root.path = r.target!.path;
        r.record!.target = r.target!.path;
        await saveMountRecord(r.record!, { exclusive: true });
        r.recorded = true;
      }
    } else {
      await intend(r, options, layers, expect);
    }
    checkpoint('root:recorded', signal);
    // Every planned layer directory in one hop, now that the record names them.
    if (layers.length > 0) await makeLayerDirs(r, layers);
    if (!ns) {
      at = r.target!;
    } else if (staged) {
      r.target = await layerDir(r, 'root');
      at = r.target;
      checkpoint('root:staging', signal);
    } else {
      at = r.root.path;
    }
    if (!needsOverlay) {
      const driverChoice = await choosing;
      // A plain kernel root is one mount and its record: the record goes in the unmount's hop.
      if (driverChoice.driver === 'kernel' && !ns && layers.length === 0 && data.length === 0 && r.recorded && at instanceof PinnedDir) {
        at.removeOnUnmount = checkedRecordFile(r.record!.target, r.record!.mntns) ?? undefined;
        r.recordGoesWith = at;
      }
      const m = await mountImage(image, at, { ...local, partition: rootPart, writable: rootWritable, recordAs: 'merge', ...(r.recorded ? { mergeInto: r.record! } : {}), driverChoice });
      r.target = undefined; // the mount owns it now
      r.mounts.push(m);
      r.top = m;
      r.root.readonly = m.readOnly;
      checkpoint('root:mounted', signal);
    } else {
      await assembleOverlay(image, at as PinnedDir, r, { ...local, rootPart, rootChoice: choosing, writable, writableTmpfs, external, sifOverlays, tmpfsSize: options.tmpfsSize ?? DEFAULT_TMPFS_SIZE });
    }
    if (data.length > 0) await mountData(image, r, at as PinnedDir, data, local);
    await r.closeTransient();
    checkpoint('root:built', signal);
    if (staged) {
      await moveTreeIntoNamespace(r, ns!, path.resolve(target), data.length > 0);
      checkpoint('root:moved', signal);
    }
    // A FUSE top merged its helpers into our record; nothing else to add.
    return r;
  } catch (err) {
    await r.close().catch((e: unknown) => debug('cleanup after failed root(): %s', (e as Error).message));
    throw err;
  }
}

/** Data partitions on directories resolved inside the mounted root (RESOLVE_IN_ROOT). */
async function mountData(image: Image, r: Root, at: PinnedDir, data: DataMount[], local: Omit<MountImageOptions, 'partition' | 'writable'>): Promise<void> {
  const top = await openMountRoot(at);
  r.transient.push(top);
  checkpoint('root:data-root', local.signal);
  for (const d of data) {
    const part = findPartition(image, d.partition);
    let dir: PinnedDir;
    try {
      dir = await resolveInRoot(top, d.path);
    } catch (err) {
      if (hasErrorCode(err, 'ENOENT') || hasErrorCode(err, 'ENOTDIR'))
        throw invalidArgValue('data[].path', d.path, `must be an existing directory in the image (${(err as Error).message})`);
      throw err;
    }
    try {
      if (r.record) {
        r.record.nestedMounts = [dir.path, ...(r.record.nestedMounts ?? [])];
        await saveMountRecord(r.record);
      }
      const m = await mountImage(image, dir, { ...local, partition: part, writable: false, recordAs: 'none' });
      r.mounts.push(m);
      r.nested.push(m);
    } catch (err) {
      await dir.close(); // not taken over by a mount
      throw err;
    }
    checkpoint('root:data', local.signal);
  }
}

interface OverlayPlan extends Omit<MountImageOptions, 'partition' | 'writable'>, Pick<RootOptions, 'as' | 'allowBlockDevice'> {
  rootPart: Section;
  /** The root partition's driver, being chosen meanwhile. */
  rootChoice: Promise<DriverChoice>;
  writable: boolean;
  writableTmpfs: boolean;
  external: Array<{ path: string; writable: boolean }>;
  /** The image's own ext3 overlay partitions (SIF), in order. */
  sifOverlays: Section[];
  tmpfsSize: string;
}

/**
 * Mounts one overlay partition on a session directory of its own: as the writable layer
 * (its upper/ and work/, pinned) or as a read-only lower layer (its upper/ if it has one, a
 * real directory, else the partition itself; a squashfs is itself the layer).
 */
async function overlayLayer(
  r: Root,
  name: string,
  img: Image,
  part: Section,
  rw: boolean,
  options: Omit<MountImageOptions, 'partition' | 'writable'>,
): Promise<{ upper?: { upper: string; work: string }; lower?: string; onFuse: boolean }> {
  await planLayer(r, name);
  const pinned = await layerDir(r, name);
  const dir = pinned.path;
  let m: MountedFilesystem;
  try {
    m = await mountImage(img, pinned, { ...options, partition: part, writable: rw, recordAs: 'none' });
  } catch (err) {
    await pinned.close(); // not taken over by a mount
    throw err;
  }
  r.mounts.push(m);
  checkpoint('root:overlay-layer', options.signal);
  const onFuse = m.driver === 'fuse';
  const use = layerUse(part, rw);
  if (use === 'whole') return { lower: dir, onFuse };
  const layer = await layerRoot(r, dir);
  if (use === 'upper-and-work') return { upper: await pinnedUpperDirs(r, layer), onFuse };
  const up = await resolveBeneath(layer, UPPER_DIR.name).catch((err: unknown) => {
    if (hasErrorCode(err, 'ENOENT')) return null;
    throw err;
  });
  if (up) r.transient.push(up);
  return { lower: up ? up.procPath : dir, onFuse };
}

/** The root partition on the session's lower/ directory (its driver chosen already): the overlay's bottom layer. */
async function mountLower(image: Image, r: Root, rootPart: Section, choice: Promise<DriverChoice>, local: Omit<MountImageOptions, 'partition' | 'writable'>): Promise<{ where: string; mount: MountedFilesystem }> {
  const dir = await layerDir(r, 'lower');
  const where = dir.path;
  try {
    return { where, mount: await mountImage(image, dir, { ...local, partition: rootPart, writable: false, recordAs: 'none', driverChoice: await choice }) };
  } catch (err) {
    await dir.close(); // not taken over by a mount
    throw err;
  }
}

/** Our own fresh tmpfs on the session's tmpfs/ directory, with the upper/ and work/ overlayfs writes to: its paths are ours to trust. */
async function tmpfsUpper(r: Root, size: string, signal: AbortSignal | undefined): Promise<{ upper: string; work: string }> {
  const dir = await layerDir(r, 'tmpfs');
  const where = dir.path;
  try {
    const tmpfs = tmpfsLayer(size);
    await mount('tmpfs', dir, 'tmpfs', tmpfs.flags, tmpfs.options, signal ? { signal } : {});
  } catch (err) {
    await dir.close();
    throw err;
  }
  r.mounts.push(plainKernelMount(dir, 'tmpfs', false));
  checkpoint('root:tmpfs', signal);
  const upper = { upper: path.join(where, UPPER_DIR.name), work: path.join(where, WORK_DIR.name) };
  await native((b) => b.makeDirs([{ path: upper.upper, mode: UPPER_DIR.mode }, { path: upper.work, mode: WORK_DIR.mode }]));
  checkpoint('root:tmpfs-dirs', signal);
  return upper;
}

/**
 * The overlay, in Apptainer's order. Lower layers, top-most first: every overlay partition of
 * each external overlay (in the order given), then every ext3 overlay partition of the image
 * itself (its SIF overlay partitions are applied on every run: read-only unless the image was
 * opened writable and `writable` asked), then the root partition. The writable layer, if any:
 * the first partition of an overlay opened writable, else tmpfs, else the image's first
 * overlay partition.
 */
async function assembleOverlay(image: Image, target: PinnedDir, r: Root, plan: OverlayPlan): Promise<void> {
  const { rootPart, rootChoice, writable, writableTmpfs, external, sifOverlays, tmpfsSize, ...local } = plan;
  const lowers: string[] = [];
  let upper: { upper: string; work: string } | undefined;
  let upperOnFuse = false;
  const take = (l: { upper?: { upper: string; work: string }; lower?: string; onFuse: boolean }): void => {
    if (l.upper) {
      upper = l.upper;
      upperOnFuse = l.onFuse;
    } else lowers.push(l.lower!);
  };

  // The root partition, the bottom layer, is mounted while the layers above it are made: it
  // depends on none of them. Whatever happens above, it is waited for before this returns or
  // throws, so that a failure releases it too.
  const lower = mountLower(image, r, rootPart, rootChoice, local);
  lower.catch(() => undefined); // settled below on every path; not an unhandled rejection meanwhile
  try {
    for (const [i, ov] of external.entries()) {
      const img = await init(ov.path, ov.writable, { as: plan.as, allowBlockDevice: plan.allowBlockDevice });
      r.images.push(img);
      // Used as an overlay, an image offers its overlay-capable partitions (Apptainer's usage gate).
      img.usage = OverlayUsage;
      const parts = img.getOverlayPartitions();
      if (parts.length === 0) throw new ImgmountError('ERR_NO_PARTITION', `${img.path} has no partition usable as an overlay`, { path: img.path });
      for (const [j, part] of parts.entries()) {
        const slot = externalLayer(i, j, ov, img, part, upper !== undefined, writableProblem(img, part));
        // `trusted` vouches for `image` only: an overlay image gets the default rule for its own file.
        take(await overlayLayer(r, slot.name, img, part, slot.writable, { ...local, trusted: false }));
      }
    }
    if (!upper && writableTmpfs) upper = await tmpfsUpper(r, tmpfsSize, local.signal);
    for (const [j, part] of sifOverlays.entries()) {
      const slot = sifOverlayLayer(j, upper !== undefined, writable, image.writable);
      take(await overlayLayer(r, slot.name, image, part, slot.writable, local));
    }
  } catch (err) {
    await lower.then((l) => r.mounts.push(l.mount), () => undefined); // released with the rest
    throw err;
  }
  // Pushed after the layers above it, so r.mounts keeps Apptainer's order: upper layers first.
  const bottom = await lower;
  r.mounts.push(bottom.mount);
  lowers.push(bottom.where);
  checkpoint('root:lower', local.signal);

  const { options: opts, flags, readOnly } = overlayMount(lowers, upper);
  const caps = await hostFilesystems();
  const privileged = plan.privileged ?? process.geteuid?.() === 0;
  let top: MountedFilesystem;
  if (overlayDriver({ privileged, filesystems: caps.filesystems, driver: plan.driver, upperOnFuse }) === 'kernel') {
    await mount('overlay', target, 'overlay', flags, opts.join(','), plan.signal ? { signal: plan.signal } : {});
    top = plainKernelMount(target, 'overlay', readOnly);
  } else {
    // Without the right to mount (or when FUSE is asked for): fuse-overlayfs.
    const { FuseDriver } = await import('../drivers/fuse/driver');
    const driver = new FuseDriver({ ...(plan.persist ? { persist: true } : {}), ...(plan.dieWithOwner ? { dieWithOwner: true } : {}) });
    await driver.start({ sessionPath: '', usernsFd: -1, fuseFd: -1 });
    top = await driver.mount(
      { source: 'fuse-overlayfs', target: target.path, pinned: target, filesystem: 'overlay', flags, offset: 0, size: 0, fsOptions: opts, recordMerge: true, ...(r.recorded ? { mergeInto: r.record! } : {}), ...(plan.signal ? { signal: plan.signal } : {}) } as FuseMountParams,
      kernelMountFunc,
    );
  }
  if (r.target === target) r.target = undefined; // the top mount owns it now
  r.mounts.push(top);
  r.top = top;
  r.root.readonly = readOnly;
  checkpoint('root:overlay', local.signal);
}

/**
 * A root built here on a staging directory goes to another mount namespace: a recursive
 * clone of its tree (the root and its data partitions) is moved there, then everything is
 * detached here. The layers live on as references of that tree and go away with it, so
 * nothing of the root stays in ours.
 */
async function moveTreeIntoNamespace(r: Root, ns: NamespaceTarget, target: string, nested: boolean): Promise<void> {
  const staging = path.join(r.sessionDir!, 'root');
  await bindMount(staging, target, { namespace: ns, readOnly: r.root.readonly, recursive: true });
  const inner = [...r.mounts].reverse();
  const readOnly = r.root.readonly;
  const there = new KernelMounted(target, r.top?.fstype ?? 'unknown', readOnly, null, async () => {
    try {
      // With data partitions below it, the tree goes as a whole.
      await unmountInNamespace(ns, target, nested ? MNT_DETACH : 0);
    } catch (err) {
      // Unmounted there already, or the namespace is gone (and its mounts with it).
      if (!hasErrorCode(err, 'ERR_NOT_MOUNTED') && !hasErrorCode(err, 'ERR_NAMESPACE')) throw err;
    }
  });
  // Moved: from here on a failure (below, or later in root()) releases it there too.
  r.mounts.push(there);
  for (const m of inner) {
    await umount(m.target, MNT_DETACH).catch((err: unknown) => {
      // Gone with a layer detached before it; anything else stays mounted here, in the session
      // directory, and is what the error must name (not the rmdir that would fail on it).
      if (!hasErrorCode(err, 'ERR_NOT_MOUNTED')) throw err;
      debug('detach %s: %s', m.target, (err as Error).message);
    });
  }
  await removeSessionDir(r.sessionDir!);
  r.sessionDir = undefined;
  r.nested = [];
  r.top = there;
  r.root = { path: target, readonly: readOnly };
}
