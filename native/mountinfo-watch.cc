// An event-loop watcher of a mount table: no pool thread, no timer.
#include <uv.h>

#include <memory>

#include "addon.h"

namespace imgmount {

namespace {

// new MountTableWatcher(fd, onChange) -> { close() }
// The kernel flags every change of a mount namespace's mount table on the open
// /proc/<pid>/mountinfo files of that namespace with POLLPRI|POLLERR (fs/proc_namespace.c,
// mounts_poll), once per change since the file was opened or last polled. This watches such an
// fd with a uv_poll handle on the event loop's own epoll, so waiting for a mount needs neither a
// pool thread nor a timer: onChange(null) runs on the JS thread after each change, or
// onChange('<uv error name>') if polling failed. Reading the table, the timeout and the decision
// are lib/'s (lib/drivers/fuse/wait-mount.ts). close() stops watching (idempotent); the fd stays
// the caller's and must stay open until then.
class MountTableWatcher : public Napi::ObjectWrap<MountTableWatcher> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "MountTableWatcher", {InstanceMethod<&MountTableWatcher::Close>("close")});
  }

  explicit MountTableWatcher(const Napi::CallbackInfo& info) : Napi::ObjectWrap<MountTableWatcher>(info) {
    Napi::Env env = info.Env();
    int fd = ArgInt(info, 0, "fd");
    if (!info[1].IsFunction()) throw Napi::TypeError::New(env, "onChange must be a function");
    uv_loop_t* loop = nullptr;
    if (napi_get_uv_event_loop(env, &loop) != napi_ok || loop == nullptr)
      throw Napi::Error::New(env, "no event loop for this environment");
    auto* poll = new uv_poll_t;
    int rc = uv_poll_init(loop, poll, fd);
    if (rc == 0) {
      poll->data = this;
      rc = uv_poll_start(poll, UV_PRIORITIZED, OnPoll);
      if (rc != 0) {
        poll->data = nullptr;
        uv_close(reinterpret_cast<uv_handle_t*>(poll), OnClosed);
      }
    } else {
      delete poll;
    }
    if (rc != 0) {
      Failure f;
      f.Set("uv_poll_start(/proc/PID/mountinfo)", "", "", -rc);
      throw Napi::Error(env, MakeSystemError(env, f));
    }
    poll_ = poll;
    callback_ = Napi::Persistent(info[1].As<Napi::Function>());
    context_ = std::make_unique<Napi::AsyncContext>(env, "imgmount:mountinfo.watch");
    Ref();  // stay alive while the handle can call back
    referenced_ = true;
  }

  ~MountTableWatcher() override { StopPoll(); }

 private:
  Napi::Value Close(const Napi::CallbackInfo& info) {
    StopPoll();
    callback_.Reset();
    if (referenced_) {
      referenced_ = false;
      Unref();
    }
    return info.Env().Undefined();
  }

  void StopPoll() {
    if (poll_ == nullptr) return;
    uv_poll_stop(poll_);
    poll_->data = nullptr;
    uv_close(reinterpret_cast<uv_handle_t*>(poll_), OnClosed);
    poll_ = nullptr;
  }

  static void OnClosed(uv_handle_t* h) { delete reinterpret_cast<uv_poll_t*>(h); }

  static void OnPoll(uv_poll_t* h, int status, int) {
    auto* self = static_cast<MountTableWatcher*>(h->data);
    if (self == nullptr || self->callback_.IsEmpty()) return;
    Napi::Env env = self->Env();
    Napi::HandleScope scope(env);
    Napi::Value arg = status < 0 ? Napi::Value(Napi::String::New(env, uv_err_name(status))) : env.Null();
    try {
      self->callback_.MakeCallback(env.Global(), {arg}, *self->context_);
    } catch (const Napi::Error& e) {
      napi_fatal_exception(env, e.Value());
    }
  }

  uv_poll_t* poll_ = nullptr;
  Napi::FunctionReference callback_;
  std::unique_ptr<Napi::AsyncContext> context_;
  bool referenced_ = false;
};

}  // namespace

void InitMountinfoWatch(Napi::Env env, Napi::Object exports) {
  exports.Set("MountTableWatcher", MountTableWatcher::Define(env));
}

}  // namespace imgmount
