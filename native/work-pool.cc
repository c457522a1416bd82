// The addon's thread pool and each environment's completions (see work-pool.h).
#include "work-pool.h"

#include <pthread.h>
#include <sched.h>
#include <signal.h>

#include <condition_variable>
#include <deque>
#include <mutex>
#include <utility>
#include <vector>

#include "addon.h"

namespace imgmount {

namespace {

// As many as libuv's pool has by default: what the addon's calls had before they had their own.
constexpr size_t kMaxThreads = 4;

}  // namespace

// One environment's side: its thread-safe function, and what the pool still holds of its jobs.
// Freed when the environment goes, once no pool thread can touch it any more.
struct EnvWork {
  napi_threadsafe_function tsfn = nullptr;
  std::mutex mu;
  std::condition_variable drained;
  size_t inFlight = 0;                // queued or running on the pool (mu)
  bool closing = false;               // the environment is going: results are not delivered (mu)
  std::vector<PoolJob*> undelivered;  // finished after that, deleted on the JS thread (mu)
  size_t pending = 0;                 // JS thread only: calls not completed, which keep the loop alive
};

class WorkQueue {
 public:
  // Never destroyed: its threads may outlive static destructors at exit.
  static WorkQueue& Get() {
    static WorkQueue* q = new WorkQueue();
    return *q;
  }

  void Submit(EnvWork* w, PoolJob* job) {
    std::lock_guard<std::mutex> l(mu_);
    queue_.emplace_back(w, job);
    if (queue_.size() > idle_ && threads_ < kMaxThreads && StartThread()) threads_++;
    cv_.notify_one();
  }

  static void SetContext(PoolJob* job, napi_async_context c) { job->asyncContext_ = c; }
  static napi_async_context Context(PoolJob* job) { return job->asyncContext_; }

 private:
  // Threads start with every signal blocked (signals are the JS thread's business) and are
  // detached: the process's exit ends them.
  bool StartThread() {
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    pthread_t t;
    bool ok = pthread_create(&t, nullptr, Run, this) == 0;
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
    std::unique_lock<std::mutex> l(mu_);
    for (;;) {
      idle_++;
      cv_.wait(l, [this] { return !queue_.empty(); });
      idle_--;
      auto [w, job] = queue_.front();
      queue_.pop_front();
      l.unlock();
      job->Execute();
      Deliver(w, job);
      l.lock();
    }
  }

  static void Deliver(EnvWork* w, PoolJob* job) {
    std::lock_guard<std::mutex> l(w->mu);
    if (w->closing || napi_call_threadsafe_function(w->tsfn, job, napi_tsfn_nonblocking) != napi_ok) w->undelivered.push_back(job);
    if (--w->inFlight == 0) w->drained.notify_all();
  }

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::pair<EnvWork*, PoolJob*>> queue_;
  size_t idle_ = 0;
  size_t threads_ = 0;
};

namespace {

void Complete(napi_env env, napi_value, void* context, void* data) {
  auto* job = static_cast<PoolJob*>(data);
  if (env == nullptr) {  // the environment is going (its JS thread): nobody to tell
    delete job;
    return;
  }
  auto* w = static_cast<EnvWork*>(context);
  if (--w->pending == 0) napi_unref_threadsafe_function(env, w->tsfn);
  try {
    job->Complete(Napi::Env(env));
  } catch (...) {
    // Complete settles its promise itself; nothing may unwind into Node's C frames.
  }
  napi_async_destroy(env, WorkQueue::Context(job));
  delete job;
}

// The environment is going (its JS thread): wait for what the pool still runs for it, then
// drop it all. A call blocked in the kernel holds this up, as an async_work in flight would.
void Finalize(napi_env, void* data, void*) {
  auto* w = static_cast<EnvWork*>(data);
  std::vector<PoolJob*> undelivered;
  {
    std::unique_lock<std::mutex> l(w->mu);
    w->closing = true;
    w->drained.wait(l, [w] { return w->inFlight == 0; });
    undelivered.swap(w->undelivered);
  }
  for (PoolJob* job : undelivered) delete job;
  delete w;
}

}  // namespace

void InitWorkPool(Napi::Env env) {
  auto* w = new EnvWork();
  Napi::String name = Napi::String::New(env, "imgmount:completions");
  napi_status s = napi_create_threadsafe_function(env, nullptr, nullptr, name, 0, 1, w, Finalize, w, Complete, &w->tsfn);
  if (s != napi_ok) {
    delete w;
    NAPI_THROW_VOID(Napi::Error::New(env, "imgmount: could not set up completions"));
  }
  napi_unref_threadsafe_function(env, w->tsfn);  // only calls in flight keep the loop alive
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
  if (w->pending++ == 0) napi_ref_threadsafe_function(env, w->tsfn);
  {
    std::lock_guard<std::mutex> l(w->mu);
    w->inFlight++;
  }
  WorkQueue::Get().Submit(w, job);
}

}  // namespace imgmount
