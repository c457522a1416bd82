// Shared pieces of the imgmount addon.
//
// The addon only translates: JS arguments in, one syscall (or a fixed sequence of
// syscalls that must run on one thread) out, errno back as a SystemError built from the
// JS-defined class handed over by lib/native/binding.ts. It holds no policy: retries,
// fallbacks and defaults all live in lib/.
#pragma once

#include <napi.h>

#include <cerrno>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "work-pool.h"

namespace imgmount {

// Why a call failed: errno plus where, as Node's SystemError wants it.
struct Failure {
  int err = 0;
  std::string syscall;
  std::string path;
  std::string dest;
  std::vector<std::string> kernelMessages;
  // Records the current errno for `call` and returns false, so callers can write
  // `return f.Set("ioctl(LOOP_CONFIGURE)", dev)`.
  bool Set(const char* call, const std::string& p = "", const std::string& d = "", int e = errno) {
    err = e;
    syscall = call;
    path = p;
    dest = d;
    return false;
  }
  bool failed() const { return err != 0; }
};

// Per-environment state (worker_threads and several copies of the addon each get their own).
struct EnvWork;
struct Addon {
  Napi::FunctionReference systemErrorClass;
  EnvWork* work = nullptr;  // this environment's completions (work-pool.cc)
};

Napi::Value MakeSystemError(Napi::Env env, const Failure& f);

// Runs `work` on the addon's pool (async; see work-pool.h) or inline (sync twin), then
// converts the result. `work` must not touch Napi; it fills `out` or returns false with `fail` set.
template <typename Out>
Napi::Value Dispatch(const Napi::CallbackInfo& info, bool sync, const char* resourceName,
                     std::function<bool(Out&, Failure&)> work,
                     std::function<Napi::Value(Napi::Env, Out&)> toJs);

template <typename Out>
class LambdaWorker : public PoolJob {
 public:
  LambdaWorker(Napi::Env env, std::function<bool(Out&, Failure&)> work,
               std::function<Napi::Value(Napi::Env, Out&)> toJs)
      : deferred_(Napi::Promise::Deferred::New(env)), work_(std::move(work)), toJs_(std::move(toJs)) {}

  Napi::Promise Promise() { return deferred_.Promise(); }

  void Execute() override {
    if (!work_(out_, failure_) && !failure_.failed()) failure_.Set("unknown", "", "", EIO);
  }
  void Complete(Napi::Env env) override {
    Napi::HandleScope scope(env);
    if (failure_.failed()) {
      deferred_.Reject(MakeSystemError(env, failure_));
      return;
    }
    try {
      deferred_.Resolve(toJs_(env, out_));
    } catch (const Napi::Error& e) {
      deferred_.Reject(e.Value());
    }
  }

 private:
  Napi::Promise::Deferred deferred_;
  std::function<bool(Out&, Failure&)> work_;
  std::function<Napi::Value(Napi::Env, Out&)> toJs_;
  Out out_{};
  Failure failure_;
};

template <typename Out>
Napi::Value Dispatch(const Napi::CallbackInfo& info, bool sync, const char* resourceName,
                     std::function<bool(Out&, Failure&)> work,
                     std::function<Napi::Value(Napi::Env, Out&)> toJs) {
  Napi::Env env = info.Env();
  if (sync) {
    Out out{};
    Failure f;
    if (!work(out, f)) {
      if (!f.failed()) f.Set("unknown", "", "", EIO);
      throw Napi::Error(env, MakeSystemError(env, f));
    }
    return toJs(env, out);
  }
  auto* w = new LambdaWorker<Out>(env, std::move(work), std::move(toJs));
  Napi::Promise p = w->Promise();
  QueueJob(env, w, resourceName);
  return p;
}

// Argument helpers: they throw a TypeError naming the argument.
int32_t ArgInt(const Napi::CallbackInfo& info, size_t i, const char* name);
int64_t ArgInt64(const Napi::Value& v, const char* name);
uint64_t ArgUint64(const Napi::Value& v, const char* name);
// A BigUint64Array's values, copied.
std::vector<uint64_t> ArgBigUint64Array(const Napi::Value& v, const char* name);
// A uid or gid: an integer from 0 to 2^32 - 2 ((uid_t)-1 means "unchanged" to the kernel).
uint32_t ArgId(const Napi::Value& v, const char* name);
std::string ArgString(const Napi::CallbackInfo& info, size_t i, const char* name);
bool ArgBool(const Napi::Value& v, bool dflt);
// Required forms (no default): a boolean, and a string taken from a value (an object's property).
bool ArgBoolean(const Napi::Value& v, const char* name);
std::string ArgStringValue(const Napi::Value& v, const char* name);
Napi::Object ArgObject(const Napi::CallbackInfo& info, size_t i, const char* name);
Napi::Value BigOrNumber(Napi::Env env, uint64_t v);

// Module parts; each adds its functions to `exports`.
void InitFiles(Napi::Env env, Napi::Object exports);
void InitImage(Napi::Env env, Napi::Object exports);
void InitLock(Napi::Env env, Napi::Object exports);
void InitLoop(Napi::Env env, Napi::Object exports);
void InitMount(Napi::Env env, Napi::Object exports);
void InitAttachMount(Napi::Env env, Napi::Object exports);
void InitMountinfoWatch(Napi::Env env, Napi::Object exports);
void InitSpawn(Napi::Env env, Napi::Object exports);
void InitNamespace(Napi::Env env, Napi::Object exports);
void InitPath(Napi::Env env, Napi::Object exports);
void InitUsers(Napi::Env env, Napi::Object exports);
void InitCredentials(Napi::Env env, Napi::Object exports);

}  // namespace imgmount
