// Where the addon's blocking calls run: threads of its own, not libuv's pool.
//
// - A mount, a loop attach or an unmount blocks for as long as the kernel, a disk or a FUSE
//   helper takes. On threads of our own that never holds up the process's fs, dns or zlib work,
//   which share libuv's four threads. Four threads, and while calls wait behind four that have
//   each been blocked over 250 ms, one more every 250 ms (up to 16): calls stuck for good on
//   one image's filesystem do not stop every other image's calls.
// - Our threads run SCHED_BATCH: waking one to take a call does not preempt the JS thread that
//   queued it (CFS wakeup preemption). With the default policy the woken thread often lands on
//   the JS thread's CPU and the JS thread waits 20-40 us per call to run again (measured on a
//   2-CPU VM: the main job's cycle went down by about a tenth). The policy changes nothing else:
//   the threads get the same CPU share.
// - After a call, one thread stays awake for up to 0.25 ms (yielding its CPU to anything
//   runnable every 20 us) and takes the next call with no wake-up. On a VM, waking an idle
//   vCPU costs 15-25 us each way; calls come in runs a few JS steps apart (init, root(),
//   close()), and a run pays it once. Measured on the 2-CPU VM: a call with no work went from
//   47 us a round trip to 3 us; init() + close() from 143 us to 95 us.
// - The JS thread does the same on its side: while a call of ours is in flight, its loop polls
//   (an active idle handle) instead of sleeping in epoll_wait, for up to 0.5 ms after the last
//   call was queued, yielding its CPU every 20 us; the completion is then seen with no
//   wake-up. It stops once no call is in flight (see OnPoll): init() + close() 57 -> 42 us.
// - Results come back to each environment's JS thread through a uv_async, one completion per
//   turn of the loop (see OnDone), each in a callback scope: its promise's reactions run as it
//   closes. (A thread-safe function would not do: it keeps completing while jobs keep
//   finishing, and with 64 roots in flight held the loop for 10-15 ms.) Each call is an async
//   resource of its own name ("imgmount:..."), for async_hooks.
//   An environment going away (an async cleanup hook) waits for its calls in flight.
#pragma once

#include <napi.h>

namespace imgmount {

class PoolJob {
 public:
  PoolJob() = default;
  PoolJob(const PoolJob&) = delete;
  PoolJob& operator=(const PoolJob&) = delete;
  virtual ~PoolJob() = default;
  // On a pool thread: the blocking work. Must not touch Napi.
  virtual void Execute() = 0;
  // On the JS thread, once Execute is done: settle the promise.
  virtual void Complete(Napi::Env env) = 0;

 private:
  friend class WorkQueue;
  napi_async_context asyncContext_ = nullptr;
};

// Sets up this environment's completions (once, from the module's Init).
void InitWorkPool(Napi::Env env);

// Runs `job` on the pool and completes it on `env`'s JS thread; the pool owns it from here on
// (deleted on the JS thread). `resourceName` names the call's async resource.
void QueueJob(Napi::Env env, PoolJob* job, const char* resourceName);

}  // namespace imgmount
