// An event-loop watcher of a mount table: no pool thread, no timer.
#include <memory>

#include "addon.h"
#include "loop-poll.h"

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
class MountTableWatcher : public LoopWatcher<MountTableWatcher> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "MountTableWatcher", {InstanceMethod<&MountTableWatcher::Close>("close")});
  }

  explicit MountTableWatcher(const Napi::CallbackInfo& info) : LoopWatcher<MountTableWatcher>(info) {
    Napi::Env env = info.Env();
    int fd = ArgInt(info, 0, "fd");
    if (!info[1].IsFunction()) throw Napi::TypeError::New(env, "onChange must be a function");
    Watch(env, fd, UV_PRIORITIZED, OnPoll, info[1].As<Napi::Function>(), "imgmount:mountinfo.watch", "uv_poll_start(/proc/PID/mountinfo)");
  }

 private:
  Napi::Value Close(const Napi::CallbackInfo& info) {
    StopWatching();
    return info.Env().Undefined();
  }

  static void OnPoll(uv_poll_t* h, int status, int) {
    auto* self = static_cast<MountTableWatcher*>(h->data);
    if (self == nullptr || !self->Watching()) return;
    Napi::Env env = self->Env();
    Napi::HandleScope scope(env);
    Napi::Value arg = status < 0 ? Napi::Value(Napi::String::New(env, uv_err_name(status))) : env.Null();
    self->Deliver(env, {arg});
  }
};

}  // namespace

void InitMountinfoWatch(Napi::Env env, Napi::Object exports) {
  exports.Set("MountTableWatcher", MountTableWatcher::Define(env));
}

}  // namespace imgmount
