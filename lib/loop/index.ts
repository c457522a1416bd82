// Loop devices: attach an image (or a partition of it) to /dev/loopN, share devices, read state.
export { attachLoop, detachLoop } from './attach';
export { type AttachLoopOptions, type LoopSource } from './context';
export { LoopDevice, type CloseLoopOptions } from './device';
export { loopConfigureSupported } from './setup';
export { listLoopDevices, loopStatus, loopNumber, type ListLoopOptions, type LoopStatus } from './status';
export {
  DEFAULT_MAX_LOOP_DEVICES,
  LOOP_API_ENV,
  LO_FLAGS_AUTOCLEAR,
  LO_FLAGS_DIRECT_IO,
  LO_FLAGS_PARTSCAN,
  LO_FLAGS_READ_ONLY,
  type LoopApi,
} from './constants';
import { counters, type LoopCounters } from './internal';

/** What the loop layer did in this process so far (attaches, reuses, retries...). */
export function loopCounters(): Readonly<LoopCounters> {
  return { ...counters };
}
export type { LoopCounters };
