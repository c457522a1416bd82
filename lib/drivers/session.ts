// The life cycle every built-in driver shares, without Apptainer's hidden ordering traps:
// mount() before start() or after stop('') is a clear ERR_DRIVER_STATE error (Apptainer
// blocked forever or panicked), and stop(target) releases exactly what serves that target.

import { ImgmountError } from '../errors';
import type { Driver, DriverParams, MountFunc } from '../image/driver';
import type { DriverMountParams, DriverName, MountedFilesystem } from './types';

type State = 'new' | 'started' | 'stopped';

export abstract class DriverSession implements Driver {
  abstract readonly name: DriverName;
  #state: State = 'new';
  #params: DriverParams | undefined;
  #containerPid = 0;
  #hybrid = false;
  readonly #mounts = new Map<string, MountedFilesystem>();

  /** Session parameters given to start() (user namespace fd, /dev/fuse fd, session dir). */
  protected get params(): DriverParams {
    return this.#params!;
  }

  protected get containerPid(): number {
    return this.#containerPid;
  }

  protected get hybrid(): boolean {
    return this.#hybrid;
  }

  async start(params: DriverParams, containerPid = 0, hybrid = false): Promise<void> {
    if (this.#state === 'stopped') throw this.#stateError('was stopped; create a new driver to start again');
    if (this.#state === 'started') throw this.#stateError('is already started');
    this.#params = { ...params };
    this.#containerPid = containerPid;
    this.#hybrid = hybrid;
    this.#state = 'started';
  }

  async mount(params: DriverMountParams, mountFunc: MountFunc): Promise<MountedFilesystem> {
    if (this.#state === 'new') throw this.#stateError('is not started: call start() before mount()');
    if (this.#state === 'stopped') throw this.#stateError('was stopped: mount() after stop() is not allowed');
    if (this.#mounts.get(params.target)?.closed === false) throw this.#stateError(`already has a mount at ${params.target}`);
    const mounted = await this.doMount(params, mountFunc);
    this.#mounts.set(params.target, mounted);
    return mounted;
  }

  /**
   * Releases what serves `target` (unmounting it if it is still mounted). With "" the
   * session ends: everything still mounted by this driver is released, and later mounts
   * are refused.
   */
  async stop(target: string): Promise<void> {
    if (target === '') {
      this.#state = 'stopped';
      const all = [...this.#mounts.values()].reverse();
      this.#mounts.clear();
      const errors: unknown[] = [];
      for (const m of all) await m.close().catch((e: unknown) => errors.push(e));
      if (errors.length) throw new AggregateError(errors, `${this.name} driver: ${errors.length} mount(s) failed to release`);
      return;
    }
    const m = this.#mounts.get(target);
    if (!m) return;
    await m.close();
    this.#mounts.delete(target);
  }

  /** Targets this session currently serves. */
  get targets(): string[] {
    return [...this.#mounts.keys()];
  }

  abstract features(): number;

  protected abstract doMount(params: DriverMountParams, mountFunc: MountFunc): Promise<MountedFilesystem>;

  #stateError(what: string): ImgmountError {
    return new ImgmountError('ERR_DRIVER_STATE', `${this.name} driver ${what}`);
  }
}
