// Loads the C++ addon through `bindings` and types its raw surface.
//
// Nothing here is public API: lib/ wraps every native call, applies defaults and policy,
// and re-creates the call-site stack on failure (see `native()` below).

import bindings from 'bindings';
import * as path from 'node:path';
import { ImgmountError, SystemError } from '../errors';

export type LockType = 'read' | 'write' | 'unlock';

export interface NativeLockHolder {
  type: 'read' | 'write';
  start: number;
  length: number;
  pid: number;
}

/** The raw addon. Numbers that may exceed 2^53 come back as bigint. */
export interface NativeBinding {
  abiVersion: number;
  initialize(options: { SystemError: typeof SystemError }): void;
  ofdSetLock(fd: number, type: LockType, start: number, length: number, sync?: boolean): Promise<void>;
  ofdGetLock(fd: number, type: LockType, start: number, length: number, sync?: boolean): Promise<NativeLockHolder | null>;
  /** NSS lookups (getpwnam_r/getgrnam_r): the id, or null if there is no such name. */
  lookupUser(name: string): Promise<number | null>;
  lookupGroup(name: string): Promise<number | null>;
  [name: string]: unknown;
}

const packageRoot = path.resolve(__dirname, '..', '..', '..');

let loaded: NativeBinding | undefined;
let loadError: ImgmountError | undefined;

/** The addon, loaded once per environment; throws ERR_NATIVE_LOAD naming every place it looked. */
export function binding(): NativeBinding {
  if (loaded) return loaded;
  if (loadError) throw loadError;
  const override = process.env.IMGMOUNT_NATIVE_PATH;
  try {
    const b: NativeBinding = override
      ? require(path.resolve(override))
      : bindings({ bindings: 'imgmount.node', module_root: packageRoot });
    b.initialize({ SystemError });
    loaded = b;
    return b;
  } catch (cause) {
    const tried = (cause as { tries?: string[] }).tries ?? (override ? [path.resolve(override)] : []);
    loadError = new ImgmountError(
      'ERR_NATIVE_LOAD',
      'could not load the imgmount native addon' +
        (tried.length ? `; tried:\n  ${tried.join('\n  ')}\n` : ' ') +
        `(${(cause as Error).message?.split('\n')[0]}). Build it with \`npm install\` (or \`npx node-gyp rebuild\`) ` +
        'on Linux with python3, make and g++ installed, or point IMGMOUNT_NATIVE_PATH at a built imgmount.node.',
      { cause, details: { tried } },
    );
    throw loadError;
  }
}

/** Where the addon's build output lives (the namespace helper executable sits next to it). */
export function nativeBuildDir(): string {
  const candidates = [
    path.join(packageRoot, 'build', 'Release'),
    path.join(packageRoot, 'build', 'Debug'),
  ];
  return candidates[0]!;
}

/**
 * Calls a native function and, if it rejects, gives the error the stack of the JS caller
 * (an async native rejection would otherwise point into the event loop).
 */
export async function native<T>(call: (b: NativeBinding) => Promise<T>): Promise<T> {
  const site: { stack?: string } = {};
  Error.captureStackTrace(site, native);
  try {
    return await call(binding());
  } catch (err) {
    if (err instanceof Error && site.stack) {
      const head = `${err.name}: ${err.message}`;
      err.stack = head + site.stack.slice(site.stack.indexOf('\n'));
    }
    throw err;
  }
}
