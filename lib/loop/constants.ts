// Loop-device constants (linux/loop.h) and imgmount's loop defaults.

/** lo_flags bits. */
export const LO_FLAGS_READ_ONLY = 1;
export const LO_FLAGS_AUTOCLEAR = 4;
export const LO_FLAGS_PARTSCAN = 8;
export const LO_FLAGS_DIRECT_IO = 16;

/** Bytes of lo_file_name the kernel keeps (including the terminating NUL). */
export const LO_NAME_SIZE = 64;

/** Apptainer's default `max loop devices`: device numbers at or above it are refused. */
export const DEFAULT_MAX_LOOP_DEVICES = 256;

/** Attempts at "take a free device and configure it" when other attachers win the race (EBUSY). */
export const DEFAULT_BUSY_RETRIES = 64;

/** Retries (after the first try) of LOOP_CONFIGURE, LOOP_SET_FD or LOOP_SET_STATUS64 answered with EAGAIN. */
export const DEFAULT_EAGAIN_RETRIES = 8;

/** First back-off step in milliseconds; it doubles up to MAX_BACKOFF_MS. */
export const BACKOFF_START_MS = 2;
export const MAX_BACKOFF_MS = 250;

/** How long a shared attach waits for another process's shared attach (cross-process lock). */
export const DEFAULT_SHARED_LOCK_TIMEOUT_MS = 30_000;

/** Which ioctls attach a device: `IMGMOUNT_LOOP_API=auto|configure|legacy`. */
export type LoopApi = 'auto' | 'configure' | 'legacy';
export const LOOP_API_ENV = 'IMGMOUNT_LOOP_API';
