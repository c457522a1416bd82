// capabilities(): what this kernel and this process can do, found by trying harmless things
// (probe syscalls, and detached ID-mapped mounts of tiny built-in images), memoised.

import * as fs from 'node:fs';
import { closeFd } from '../io/fd';
import * as fsp from 'node:fs/promises';
import { abortError } from '../util/abort';
import * as os from 'node:os';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { gunzip as gunzipCb } from 'node:zlib';
import { ImgmountError } from '../errors';
import { loopConfigureSupported } from '../loop/setup';
import { debug } from '../util/debug';
import { native } from '../native/binding';
import { createUserNamespace } from '../ns/userns';
import { hostFilesystems } from './host-filesystems';
import type { NamespaceFd } from '../ns/namespace';
import { buildMount } from './partition';
import { probeMountApi, type ApiSupport } from './new-api';
import { overlayLayersSupported } from './overlay-layers';
import { PROBE_IMAGES } from './probe-images';

const gunzip = promisify(gunzipCb);

/** Filesystems whose ID-map support is probed, and the image each probe mounts. */
export const IDMAP_PROBES = {
  squashfs: 'squashfs',
  ext4: 'ext2',
  ext3: 'ext3',
  ext2: 'ext2',
  tmpfs: null,
} as const;
export type IdmapProbeFs = keyof typeof IDMAP_PROBES;

export interface Capabilities {
  /** os.release(). */
  kernel: string;
  /** Effective uid 0. */
  root: boolean;
  /** /dev/loop-control can be opened. */
  loopControl: boolean;
  /** LOOP_CONFIGURE exists (else attaches use LOOP_SET_FD + LOOP_SET_STATUS64). */
  loopConfigure: boolean;
  /** fsopen/fsconfig/fsmount/move_mount. */
  newMountApi: ApiSupport;
  /** mount_setattr (needed for ID-mapped mounts). */
  mountSetattr: ApiSupport;
  /** An overlay can be built from detached mounts by fd (a tmpfs-overlay root is then one native call). */
  overlayLayersByFd: boolean;
  /** /proc/filesystems, without the nodev marker. */
  filesystems: string[];
  /** Per filesystem type: an ID-mapped mount of it works here. */
  idmap: Record<IdmapProbeFs, boolean>;
  /** A user namespace with an id map could be created. */
  userNamespaces: boolean;
  fuse: {
    /** The kernel has fuse and /dev/fuse exists. */
    available: boolean;
    /** /dev/fuse permission bits (0o666 lets unprivileged users mount FUSE). */
    deviceMode: number | null;
    /** Others may open /dev/fuse. */
    unprivileged: boolean;
  };
  /** Why something is false when it is not simply missing from the kernel. */
  notes: string[];
}

let memo: Promise<Capabilities> | undefined;

/**
 * What this machine supports. Memoised; `{ refresh: true }` probes again. An abort stops the
 * wait (the probe itself finishes and is kept for the next caller): warm it at start-up.
 */
export function capabilities(options: { refresh?: boolean; signal?: AbortSignal } = {}): Promise<Capabilities> {
  if (options.signal?.aborted) return Promise.reject(abortError(options.signal));
  if (options.refresh || !memo) {
    memo = probe(options.refresh === true);
    memo.catch(() => (memo = undefined));
  }
  if (!options.signal) return memo;
  const signal = options.signal;
  return new Promise((resolve, reject) => {
    const onAbort = (): void => reject(abortError(signal));
    signal.addEventListener('abort', onAbort, { once: true });
    memo!.then(
      (c) => (signal.removeEventListener('abort', onAbort), resolve(c)),
      (e: unknown) => (signal.removeEventListener('abort', onAbort), reject(e)),
    );
  });
}

async function canOpen(p: string, flags: number): Promise<boolean> {
  try {
    await (await fsp.open(p, flags)).close();
    return true;
  } catch {
    return false;
  }
}

async function probe(refresh: boolean): Promise<Capabilities> {
  const host = await hostFilesystems(refresh);
  const notes: string[] = [...host.notes];
  const filesystems = host.filesystems;
  const root = process.geteuid?.() === 0;
  const loopControl = await canOpen('/dev/loop-control', fs.constants.O_RDWR);
  let loopConfigure = false;
  if (loopControl) loopConfigure = await loopConfigureSupported().catch(() => false);
  else notes.push('/dev/loop-control cannot be opened (not root, or no loop driver)');
  const api = await probeMountApi();
  const overlayLayersByFd = root && api.newMountApi === 'supported' && filesystems.includes('overlay') && (await overlayLayersSupported());

  const idmap = Object.fromEntries(Object.keys(IDMAP_PROBES).map((k) => [k, false])) as Record<IdmapProbeFs, boolean>;
  let userns: NamespaceFd | undefined;
  try {
    userns = await createUserNamespace({ uidMap: [{ inside: 0, outside: 100000, count: 65536 }], gidMap: [{ inside: 0, outside: 100000, count: 65536 }] });
  } catch (err) {
    notes.push(`no user namespace: ${(err as Error).message}`);
  }
  if (userns && api.newMountApi === 'supported' && api.mountSetattr === 'supported') {
    try {
      await probeIdmap(userns, filesystems, loopControl && root, idmap, notes);
    } finally {
      await userns.close();
    }
  } else if (userns) {
    await userns.close();
    notes.push('ID-mapped mounts need the new mount API and mount_setattr');
  }
  return {
    kernel: os.release(),
    root,
    loopControl,
    loopConfigure,
    newMountApi: api.newMountApi,
    mountSetattr: api.mountSetattr,
    overlayLayersByFd,
    filesystems,
    idmap,
    userNamespaces: userns !== undefined,
    fuse: host.fuse,
    notes,
  };
}

async function probeIdmap(userns: NamespaceFd, filesystems: string[], canLoop: boolean, out: Record<IdmapProbeFs, boolean>, notes: string[]): Promise<void> {
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'imgmount-probe-'));
  try {
    for (const [fstype, image] of Object.entries(IDMAP_PROBES) as Array<[IdmapProbeFs, keyof typeof PROBE_IMAGES | null]>) {
      if (!filesystems.includes(fstype)) continue;
      try {
        let mountFd: number | null;
        if (image === null) {
          mountFd = (await native((b) => b.fsMount({ api: 'new', fstype, source: 'imgmount-probe', detached: true, usernsFd: userns.fd }))).mountFd;
        } else {
          if (!canLoop) continue;
          const file = path.join(dir, `${fstype}.img`);
          await fsp.writeFile(file, await gunzip(Buffer.from(PROBE_IMAGES[image], 'base64')));
          mountFd = (await buildMount(file, { detached: true }, { fstype, idmap: userns, api: 'new' })).mountFd;
        }
        if (mountFd !== null) await closeFd(mountFd!);
        out[fstype] = true;
      } catch (err) {
        const code = (err as { code?: string }).code;
        if (!(err instanceof ImgmountError && code === 'ERR_IDMAP_UNSUPPORTED') && code !== 'EINVAL')
          notes.push(`idmap probe of ${fstype}: ${(err as Error).message}`);
        debug('capabilities: idmap %s -> %s', fstype, (err as Error).message);
      }
    }
  } finally {
    await fsp.rm(dir, { recursive: true, force: true });
  }
}
