// Kernel work in flight: the mount calls that keep a CPU busy in the kernel (binding a loop
// device, reading a superblock, building an overlay) run at most one per CPU at once. With 64
// roots asked at once on a 2-CPU machine, four such calls on the pool's four threads kept the
// JS thread waiting for a CPU (15-45 ms per round, 200-500 preemptions, by schedstat) and the
// event loop late; one per CPU leaves it a CPU. A call that takes longer than a CPU-bound one
// would (it is waiting: a slow disk, a hung NFS) gives its slot up, so it never holds up others.
// Measured with 64 concurrent roots (half with a tmpfs overlay), the median of 10 fresh
// processes, twice: event-loop p99 cold 2.2 -> 1.8-2.0 ms, warm 3.1-3.7 -> 1.0-1.8 ms; the
// round's wall time alike.

import * as os from 'node:os';
import { Admission } from '../util/admission';

/** After this long a call is waiting, not computing: its slot goes to the next. */
export const KERNEL_WORK_HOLD_MS = 50;

export const kernelWork = new Admission(Math.max(1, os.availableParallelism()));
