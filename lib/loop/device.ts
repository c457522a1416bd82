// LoopDevice: the handle of a bound loop device. close() (or `await using`) releases it: it
// detaches a device this handle bound (LOOP_CLR_FD, deferred by the kernel while the device
// is still in use), or just drops the fd of one it reuses, and closes the backing file when
// the attach opened it.

import { closeFd } from '../io/fd';
import { ImgmountError } from '../errors';
import { native, type NativeLoopInfo } from '../native/binding';
import { LO_FLAGS_AUTOCLEAR, LO_FLAGS_DIRECT_IO, LO_FLAGS_READ_ONLY } from './constants';
import { counters } from './internal';
import { debug } from '../util/debug';
import { api } from '../util/stack';
import { isSystemError } from '../util/system-error';

export interface LoopDeviceInit {
  fd: number;
  number: number;
  path: string;
  status: NativeLoopInfo;
  method: 'configure' | 'legacy' | 'shared';
  /** This handle bound the device (false: it reuses one another attach made). */
  owner: boolean;
  backingFile: string;
  imageFd?: number;
}

export interface CloseLoopOptions {
  /**
   * Detach the device (LOOP_CLR_FD; lazily, when it is still mounted or open elsewhere).
   * Default true for a device this handle bound. false just drops this handle's fd, leaving
   * the device bound (with autoclear it then goes away with its last user).
   */
  detach?: boolean;
}

/** A bound loop device. close() (or `await using`) releases it; both are idempotent. */
export class LoopDevice implements AsyncDisposable {
  /** '/dev/loopN'. */
  readonly path: string;
  readonly number: number;
  readonly offset: number | bigint;
  readonly sizeLimit: number | bigint;
  readonly readOnly: boolean;
  readonly autoclear: boolean;
  readonly directIo: boolean;
  /** Which ioctls bound it, or 'shared' when this handle reuses a device bound earlier. */
  readonly method: 'configure' | 'legacy' | 'shared';
  /** The image path given (what lo_file_name and losetup show). */
  readonly backingFile: string;
  /** LOOP_GET_STATUS64 as verified after attaching. */
  readonly status: Readonly<NativeLoopInfo>;

  #fd: number;
  readonly #owner: boolean;
  readonly #imageFd: number | undefined;
  #closing: Promise<void> | undefined;

  /** @internal */
  constructor(init: LoopDeviceInit) {
    this.#fd = init.fd;
    this.#owner = init.owner;
    this.#imageFd = init.imageFd;
    this.path = init.path;
    this.number = init.number;
    this.status = Object.freeze({ ...init.status });
    this.offset = init.status.offset;
    this.sizeLimit = init.status.sizeLimit;
    this.readOnly = (init.status.flags & LO_FLAGS_READ_ONLY) !== 0;
    this.autoclear = (init.status.flags & LO_FLAGS_AUTOCLEAR) !== 0;
    this.directIo = (init.status.flags & LO_FLAGS_DIRECT_IO) !== 0;
    this.method = init.method;
    this.backingFile = init.backingFile;
  }

  /** Whether this handle bound the device (and so detaches it on close). */
  get owner(): boolean {
    return this.#owner;
  }

  get closed(): boolean {
    return this.#closing !== undefined;
  }

  /** The open /dev/loopN fd (O_CLOEXEC); throws ERR_LOOP_CLOSED after close(). */
  get fd(): number {
    if (this.#closing) throw new ImgmountError('ERR_LOOP_CLOSED', `loop device ${this.path} handle is closed`, { path: this.path });
    return this.#fd;
  }

  close(options: CloseLoopOptions = {}): Promise<void> {
    this.#closing ??= api(this.close, () => this.#close(this.#owner && (options.detach ?? true)));
    return this.#closing;
  }

  async #close(clear: boolean): Promise<void> {
    const fd = this.#fd;
    this.#fd = -1;
    try {
      await native((b) => b.loopDetach(fd, clear, this.path));
      if (clear) counters.detached++;
      debug('loop %s: closed (%s)', this.path, clear ? 'detached' : 'left bound');
    } catch (err) {
      // ENXIO: nothing is bound any more (someone else detached it): the goal is reached.
      if (!isSystemError(err, 'ENXIO')) throw err;
    } finally {
      if (this.#imageFd !== undefined) await closeFd(this.#imageFd).catch(() => undefined);
    }
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  toJSON(): Record<string, unknown> {
    return {
      path: this.path,
      number: this.number,
      offset: String(this.offset),
      sizeLimit: String(this.sizeLimit),
      readOnly: this.readOnly,
      autoclear: this.autoclear,
      method: this.method,
      backingFile: this.backingFile,
    };
  }
}
