// An fd watched on the event loop's own epoll (a uv_poll handle): what the addon's watchers
// (mountinfo-watch.cc, spawn.cc) share. No pool thread, no timer; the callback runs on the JS
// thread with the handle's data.
#pragma once

#include <uv.h>

#include <initializer_list>
#include <memory>

#include "addon.h"

namespace imgmount {

class LoopPoll {
 public:
  LoopPoll() = default;
  LoopPoll(const LoopPoll&) = delete;
  LoopPoll& operator=(const LoopPoll&) = delete;
  ~LoopPoll() { Stop(); }

  // Starts watching `fd` for `events`; throws a SystemError with syscall `what` if libuv refuses.
  void Start(Napi::Env env, int fd, int events, uv_poll_cb cb, void* data, const char* what) {
    uv_loop_t* loop = nullptr;
    if (napi_get_uv_event_loop(env, &loop) != napi_ok || loop == nullptr) throw Napi::Error::New(env, "no event loop for this environment");
    auto* poll = new uv_poll_t;
    int rc = uv_poll_init(loop, poll, fd);
    if (rc == 0) {
      poll->data = data;
      rc = uv_poll_start(poll, events, cb);
      if (rc != 0) {
        poll->data = nullptr;
        uv_close(reinterpret_cast<uv_handle_t*>(poll), OnClosed);
      }
    } else {
      delete poll;
    }
    if (rc != 0) {
      Failure f;
      f.Set(what, "", "", -rc);
      throw Napi::Error(env, MakeSystemError(env, f));
    }
    poll_ = poll;
  }

  // Stops watching (idempotent); libuv frees the handle once it has closed it.
  void Stop() {
    if (poll_ == nullptr) return;
    uv_poll_stop(poll_);
    poll_->data = nullptr;
    uv_close(reinterpret_cast<uv_handle_t*>(poll_), OnClosed);
    poll_ = nullptr;
  }

  // Whether the watch keeps the event loop alive (as uv_ref/uv_unref).
  void KeepAlive(bool keep) {
    if (poll_ == nullptr) return;
    if (keep) uv_ref(reinterpret_cast<uv_handle_t*>(poll_));
    else uv_unref(reinterpret_cast<uv_handle_t*>(poll_));
  }

 private:
  static void OnClosed(uv_handle_t* h) { delete reinterpret_cast<uv_poll_t*>(h); }
  uv_poll_t* poll_ = nullptr;
};

}  // namespace imgmount

namespace imgmount {

// The watchers' common shape: a JS object (ObjectWrap) that watches an fd, calls a JS callback
// from the event loop with the right async context, and keeps itself alive while it watches.
template <typename T>
class LoopWatcher : public Napi::ObjectWrap<T> {
 public:
  explicit LoopWatcher(const Napi::CallbackInfo& info) : Napi::ObjectWrap<T>(info) {}
  ~LoopWatcher() override { poll_.Stop(); }

 protected:
  // Starts watching `fd`; `callback` is what Deliver() calls. Throws as LoopPoll::Start.
  void Watch(Napi::Env env, int fd, int events, uv_poll_cb cb, Napi::Function callback, const char* asyncName, const char* what) {
    poll_.Start(env, fd, events, cb, static_cast<T*>(this), what);
    callback_ = Napi::Persistent(callback);
    context_ = std::make_unique<Napi::AsyncContext>(env, asyncName);
    this->Ref();  // stay alive while the handle can call back
    referenced_ = true;
  }

  // Stops watching and lets the object be collected (idempotent); Deliver() is then a no-op.
  void StopWatching() {
    poll_.Stop();
    callback_.Reset();
    if (referenced_) {
      referenced_ = false;
      this->Unref();
    }
  }

  bool Watching() const { return !callback_.IsEmpty(); }

  // Calls the callback on the JS thread (an exception in it is the process's uncaught exception).
  void Deliver(Napi::Env env, const std::initializer_list<napi_value>& args) {
    if (callback_.IsEmpty()) return;
    try {
      callback_.MakeCallback(env.Global(), args, *context_);
    } catch (const Napi::Error& e) {
      napi_fatal_exception(env, e.Value());
    }
  }

  LoopPoll poll_;

 private:
  Napi::FunctionReference callback_;
  std::unique_ptr<Napi::AsyncContext> context_;
  bool referenced_ = false;
};

}  // namespace imgmount
