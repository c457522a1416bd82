// The addon's thread pool and each environment's completions (see work-pool.h).
#include "work-pool.h"

#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <uv.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <optional>
#include <utility>
#include <vector>

#include "addon.h"

namespace imgmount {

namespace {

// As many as libuv's pool has by default: what the addon's calls had before they had their own.
constexpr size_t kMaxThreads = 4;
// A call still running after this long waits on something (a disk, a FUSE helper, a hung
// filesystem), it is not computing. While calls wait and every thread holds such a call, the
// pool's monitor starts one more thread every kStuckAfter, up to kMaxStuckThreads: calls
// blocked for good (a dead NFS server under an image) do not stop every other image's calls.
constexpr auto kStuckAfter = std::chrono::milliseconds(250);
constexpr size_t kMaxStuckThreads = 16;
// After a call, one thread waits up to kSpinFor for the next one spinning (see SpinForWork),
// giving its CPU to any other runnable thread every kYieldEvery. After long calls too (a
// mount): the caller's next call follows its own I/O on the new mount (measured, main job in
// one process, spinning after every call against after calls under 0.2 ms only, with the JS
// thread polling (see OnPoll), 3 A/B runs: 682-721 us against 714-792; the unmount's round
// trip 114-124 us against 128-151, the user's stat between them 91-102 us against 104-123:
// a vCPU kept awake also serves libuv's wake-up). Without the JS thread's polling, spinning
// after long calls had measured 2-4% slower.
constexpr auto kSpinFor = std::chrono::microseconds(250);
constexpr auto kYieldEvery = std::chrono::microseconds(20);
// While a call is in flight, the JS thread's loop polls instead of sleeping, for up to
// kPollForNs after the last call was queued (see OnPoll).
constexpr uint64_t kPollForNs = 500 * 1000;

inline void CpuRelax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

}  // namespace

// One environment's side: a uv_async the pool wakes with finished jobs, and what the pool still
// holds of its jobs. Freed when the environment goes, once no pool thread can touch it.
struct EnvWork {
  napi_env env = nullptr;
  uv_async_t async{};
  napi_async_cleanup_hook_handle cleanup = nullptr;
  std::mutex mu;
  std::condition_variable drained;
  size_t inFlight = 0;                // queued or running on the pool (mu)
  bool closing = false;               // the environment is going: nothing more is delivered (mu)
  std::deque<PoolJob*> done;          // finished, for the JS thread, in order (mu)
  size_t pending = 0;                 // JS thread only: calls not completed, which keep the loop alive
  uv_idle_t poll{};                   // JS thread only: active while the loop polls (see OnPoll)
  uint64_t pollUntil = 0;             // JS thread only: uv_hrtime() when it stops polling
  uint64_t polledSince = 0;           // JS thread only: uv_hrtime() of its last yield
};

class WorkQueue {
 public:
  static WorkQueue& Get();

  // The thread idle the shortest time takes the job (LIFO): calls one after another keep to one
  // warm thread, whose CPU is likely still awake, instead of waking the longest-idle one.
  // The wake-up comes after the lock is released: woken under it, the thread would at once
  // block on the lock we still hold (two more futex calls and context switches per call).
  void Submit(EnvWork* w, PoolJob* job) {
    Worker* next = nullptr;
    {
      std::lock_guard<std::mutex> l(mu_);
      queue_.emplace_back(w, job);
      queued_.store(queue_.size(), std::memory_order_release);
      if (spinning_ && !spinClaimed_) {
        spinClaimed_ = true;
      } else if (!idle_.empty()) {
        next = idle_.back();
        idle_.pop_back();
        next->woken = true;
      } else if (threads_ < kMaxThreads && StartThread(Run)) {
        threads_++;
      } else if (monitorStarted_ || (monitorStarted_ = StartThread(RunMonitor))) {
        monitorCv_.notify_one();
      }
    }
    // (A Worker lives as long as its thread, that is for good: notifying it late is safe; if it
    // has gone back to waiting meanwhile, the wake-up is spurious and it waits on.)
    if (next != nullptr) next->cv.notify_one();
  }

  static void SetContext(PoolJob* job, napi_async_context c) { job->asyncContext_ = c; }
  static napi_async_context Context(PoolJob* job) { return job->asyncContext_; }

 private:
  // Threads start with every signal blocked (signals are the JS thread's business) and are
  // detached: the process's exit ends them.
  bool StartThread(void* (*body)(void*)) {
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    pthread_t t;
    bool ok = pthread_create(&t, nullptr, body, this) == 0;
    pthread_sigmask(SIG_SETMASK, &old, nullptr);
    if (ok) pthread_detach(t);
    return ok;
  }

  static void* Run(void* self) {
    pthread_setname_np(pthread_self(), "imgmount-work");
    sched_param none{};
    sched_setscheduler(0, SCHED_BATCH, &none);  // best effort: a refusal leaves the default policy
    static_cast<WorkQueue*>(self)->Loop();
    return nullptr;
  }

  void Loop() {
    Worker me;
    std::unique_lock<std::mutex> l(mu_);
    all_.push_back(&me);
    for (;;) {
      me.busySince.reset();  // between calls (spinning or asleep), not stuck on one
      if (queue_.empty() && !spinning_) SpinForWork(l);
      while (queue_.empty()) {
        me.woken = false;
        idle_.push_back(&me);
        me.cv.wait(l, [&me] { return me.woken; });
      }
      auto [w, job] = queue_.front();
      queue_.pop_front();
      queued_.store(queue_.size(), std::memory_order_release);
      me.busySince = std::chrono::steady_clock::now();
      l.unlock();
      job->Execute();
      Deliver(w, job);
      l.lock();
    }
  }

  // The pool's one spinner (mu_ held on entry and exit): waits up to kSpinFor for the next call
  // awake instead of asleep. A call submitted meanwhile is taken without a wake-up: on a VM an
  // idle vCPU halts, and waking it (an IPI, the host scheduling it again) costs the JS thread
  // and the call 15-25 us each time (measured: a call with no work, 47 us a round trip asleep,
  // 3 us awake). Calls come in runs (init, then root(), then close()), a few JS steps apart.
  // It yields every kYieldEvery: a runnable thread on its CPU is not kept waiting by a spin.
  void SpinForWork(std::unique_lock<std::mutex>& l) {
    spinning_ = true;
    spinClaimed_ = false;
    l.unlock();
    auto start = std::chrono::steady_clock::now();
    auto yielded = start;
    while (queued_.load(std::memory_order_acquire) == 0) {
      auto now = std::chrono::steady_clock::now();
      if (now - start >= kSpinFor) break;
      if (now - yielded >= kYieldEvery) {
        sched_yield();
        yielded = now;
      } else {
        CpuRelax();
      }
    }
    l.lock();
    spinning_ = false;
  }

  static void* RunMonitor(void* self) {
    pthread_setname_np(pthread_self(), "imgmount-watch");
    static_cast<WorkQueue*>(self)->Monitor();
    return nullptr;
  }

  // While calls wait with no thread free: every kStuckAfter, one more thread if all are stuck.
  void Monitor() {
    std::unique_lock<std::mutex> l(mu_);
    for (;;) {
      monitorCv_.wait(l, [this] { return !queue_.empty() && idle_.empty(); });
      monitorCv_.wait_for(l, kStuckAfter);
      if (!queue_.empty() && idle_.empty() && threads_ < kMaxStuckThreads && AllStuck() && StartThread(Run)) threads_++;
    }
  }

  // Whether every thread has been on its call longer than kStuckAfter (mu_ held); a thread
  // still starting is not.
  bool AllStuck() const {
    if (all_.size() < threads_) return false;
    auto before = std::chrono::steady_clock::now() - kStuckAfter;
    for (const Worker* t : all_)
      if (!t->busySince || *t->busySince > before) return false;
    return true;
  }

  static void Deliver(EnvWork* w, PoolJob* job) {
    std::lock_guard<std::mutex> l(w->mu);
    w->done.push_back(job);
    if (!w->closing) uv_async_send(&w->async);
    if (--w->inFlight == 0) w->drained.notify_all();
  }

  // A thread of the pool: woken on its own when idle; since when it holds its call when busy.
  struct Worker {
    std::condition_variable cv;
    bool woken = false;                                                 // (mu_)
    std::optional<std::chrono::steady_clock::time_point> busySince;  // (mu_)
  };

  std::mutex mu_;
  std::deque<std::pair<EnvWork*, PoolJob*>> queue_;
  std::vector<Worker*> idle_;  // the most recently idle last (mu_)
  std::vector<Worker*> all_;   // every thread, once running (mu_)
  std::atomic<size_t> queued_{0};  // queue_.size(), for the spinner to read without the lock
  bool spinning_ = false;          // a thread is in SpinForWork (mu_)
  bool spinClaimed_ = false;       // a call was left to it, with no wake-up (mu_)
  size_t threads_ = 0;
  bool monitorStarted_ = false;  // (mu_)
  std::condition_variable monitorCv_;
};

// Never destroyed: its threads may outlive static destructors at exit. Defined out of the class:
// the static of an inline function would be a GNU_UNIQUE symbol, which the dynamic linker shares
// between every copy of the addon a process loads (two versions of imgmount would then share
// one queue of two layouts; the build also hides every symbol but the module's entry).
WorkQueue& WorkQueue::Get() {
  static WorkQueue* q = new WorkQueue();
  return *q;
}

namespace {

// The JS thread, woken by the pool: completes one finished job (in a callback scope of its own:
// its promise's reactions run as it closes) and, if more are waiting, wakes itself again. One
// per turn of the loop, so timers and I/O run between completions: JS continuations after a
// burst of completions otherwise run back to back. Measured with 64 concurrent roots (half
// tmpfs), 10 fresh processes x 2: event-loop delay p99 cold 3.0-3.5 ms and max 5.2 ms when all
// finished jobs completed at once (2 or 4 at once: no better), 2.1-2.2 ms and 3.5 ms one at a
// time; warm p99 1.1-2.1 ms -> 0.8-1.0 ms. A lone call (the main job) is not affected.
void OnDone(uv_async_t* async) {
  auto* w = static_cast<EnvWork*>(async->data);
  PoolJob* job;
  {
    std::lock_guard<std::mutex> l(w->mu);
    if (w->done.empty()) return;
    job = w->done.front();
    w->done.pop_front();
    if (!w->done.empty()) uv_async_send(&w->async);
  }
  napi_env env = w->env;
  if (--w->pending == 0) uv_unref(reinterpret_cast<uv_handle_t*>(&w->async));
  napi_async_context context = WorkQueue::Context(job);
  napi_handle_scope handles = nullptr;
  napi_open_handle_scope(env, &handles);
  napi_value resource = nullptr;
  napi_callback_scope scope = nullptr;
  if (napi_create_object(env, &resource) == napi_ok) napi_open_callback_scope(env, resource, context, &scope);
  try {
    job->Complete(Napi::Env(env));
  } catch (...) {
    // Complete settles its promise itself; nothing may unwind into libuv's C frames.
  }
  if (scope != nullptr) napi_close_callback_scope(env, scope);
  napi_close_handle_scope(env, handles);
  napi_async_destroy(env, context);
  delete job;
}

// The JS thread's side of a call's round trip. While a call is in flight, an active idle handle
// makes the loop poll for I/O with no timeout instead of sleeping in epoll_wait, for up to
// kPollForNs after the last call was queued, giving its CPU to anything runnable every
// kYieldEvery (yielding at every turn made a main job about 20 us slower: a yield is a context
// switch whenever anything else is runnable).
// On a VM a sleeping thread's vCPU halts, and the completion's wake-up (an IPI, the host
// scheduling the vCPU again) costs 15-25 us; the pool's spinner saves the same on its side.
// Stops as soon as no call is in flight: a wait on anything else (a timer, the user's own fs
// calls) sleeps as before. Measured on the 2-CPU VM, in one process, polling against none:
// 200 calls reading a small file, 0 sleeps of the JS thread against 200; init() + close()
// 57 -> 42 us; the main job's fastest batches 686 -> 610 us, for about 240 us more CPU per
// main job (the process's, 820 -> 1060 us). A call that takes longer (a FUSE mount, a stuck
// filesystem) costs at most kPollForNs of polling.
void OnPoll(uv_idle_t* h) {
  auto* w = static_cast<EnvWork*>(h->data);
  uint64_t now = uv_hrtime();
  if (w->pending == 0 || now >= w->pollUntil) {
    uv_idle_stop(h);
    return;
  }
  if (now - w->polledSince >= static_cast<uint64_t>(std::chrono::nanoseconds(kYieldEvery).count())) {
    sched_yield();
    w->polledSince = now;
  }
}

void Freed(uv_handle_t* h) {
  auto* w = static_cast<EnvWork*>(h->data);
  if (w->cleanup != nullptr) napi_remove_async_cleanup_hook(w->cleanup);
  delete w;
}

// Closes both handles and frees `w`: the poll handle first, then the async whose close frees
// both (libuv runs close callbacks last-closed first, so closing both at once would free the
// poll handle before its own close).
void CloseHandles(EnvWork* w) {
  uv_close(reinterpret_cast<uv_handle_t*>(&w->poll), [](uv_handle_t* h) { uv_close(reinterpret_cast<uv_handle_t*>(&static_cast<EnvWork*>(h->data)->async), Freed); });
}

// The environment is going (its JS thread): wait for what the pool still runs for it, drop
// it all, then close the handles (Node runs the loop until Freed says it is done). A call
// blocked in the kernel holds this up, as an async_work in flight would.
void Teardown(napi_async_cleanup_hook_handle, void* data) {
  auto* w = static_cast<EnvWork*>(data);
  std::vector<PoolJob*> left;
  {
    std::unique_lock<std::mutex> l(w->mu);
    w->closing = true;
    w->drained.wait(l, [w] { return w->inFlight == 0; });
    left.assign(w->done.begin(), w->done.end());
    w->done.clear();
  }
  for (PoolJob* job : left) {
    napi_async_destroy(w->env, WorkQueue::Context(job));
    delete job;
  }
  CloseHandles(w);
}

}  // namespace

void InitWorkPool(Napi::Env env) {
  uv_loop_t* loop = nullptr;
  if (napi_get_uv_event_loop(env, &loop) != napi_ok || loop == nullptr) NAPI_THROW_VOID(Napi::Error::New(env, "imgmount: no event loop for this environment"));
  auto* w = new EnvWork();
  w->env = env;
  if (uv_async_init(loop, &w->async, OnDone) != 0) {
    delete w;
    NAPI_THROW_VOID(Napi::Error::New(env, "imgmount: could not set up completions"));
  }
  w->async.data = w;
  uv_unref(reinterpret_cast<uv_handle_t*>(&w->async));  // only calls in flight keep the loop alive
  uv_idle_init(loop, &w->poll);                         // (cannot fail)
  w->poll.data = w;
  uv_unref(reinterpret_cast<uv_handle_t*>(&w->poll));  // polling keeps nothing alive
  if (napi_add_async_cleanup_hook(env, Teardown, w, &w->cleanup) != napi_ok) {
    w->cleanup = nullptr;  // (none was added: Freed removes none)
    CloseHandles(w);
    NAPI_THROW_VOID(Napi::Error::New(env, "imgmount: could not set up completions"));
  }
  env.GetInstanceData<Addon>()->work = w;
}

void QueueJob(Napi::Env env, PoolJob* job, const char* resourceName) {
  EnvWork* w = env.GetInstanceData<Addon>()->work;
  napi_async_context context = nullptr;
  napi_status s = napi_async_init(env, Napi::Object::New(env), Napi::String::New(env, resourceName), &context);
  if (s != napi_ok) {
    delete job;
    NAPI_THROW_VOID(Napi::Error::New(env, std::string("imgmount: could not queue ") + resourceName));
  }
  WorkQueue::SetContext(job, context);
  if (w->pending++ == 0) uv_ref(reinterpret_cast<uv_handle_t*>(&w->async));
  {
    std::lock_guard<std::mutex> l(w->mu);
    w->inFlight++;
  }
  WorkQueue::Get().Submit(w, job);
  uint64_t now = uv_hrtime();
  w->pollUntil = now + kPollForNs;
  if (!uv_is_active(reinterpret_cast<uv_handle_t*>(&w->poll))) {
    w->polledSince = now;
    uv_idle_start(&w->poll, OnPoll);
  }
}

}  // namespace imgmount
