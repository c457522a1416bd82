// The fused loop attach + mount: LOOP_CONFIGURE and the mount in one worker hop, which keeps a
// mount cycle to a single hop. Translation only: lib/loop/setup.ts decides when it is used
// (LOOP_CONFIGURE binding, no shared device), retries it and checks what it bound.
#include <unistd.h>

#include "loop.h"
#include "mount.h"

namespace imgmount {

namespace {

bool IsSync(const Napi::CallbackInfo& info, size_t i) { return ArgBool(info[i], false); }

// loopAttachMount(loopSpec, mountSpec, keepLoopFd[, sync])
//   -> { fd | null, number, path, status, mountFd | null, messages }
// One worker hop for a whole attach + mount. A mount spec without a source mounts the loop device.
// If the mount fails, the device this call bound is released (LOOP_CLR_FD + close) and the
// error names the failing step. Unless keepLoopFd, the loop fd is closed once mounted (with
// LO_FLAGS_AUTOCLEAR the device then goes away with the mount).
struct AttachMounted {
  LoopAttached loop;
  MountDone mount;
};
Napi::Value LoopAttachMountJs(const Napi::CallbackInfo& info) {
  LoopAttachSpec ls = ParseLoopAttachSpec(ArgObject(info, 0, "loopSpec"));
  if (ls.legacy) throw Napi::TypeError::New(info.Env(), "loopAttachMount needs method 'configure'");
  MountSpec ms = ParseMountSpec(ArgObject(info, 1, "mountSpec"));
  bool keep = ArgBoolean(info[2], "keepLoopFd");
  return Dispatch<AttachMounted>(
      info, IsSync(info, 3), "imgmount:loop.attachMount",
      [ls, ms, keep](AttachMounted& out, Failure& f) mutable {
        if (!LoopAttach(ls, out.loop, f)) return false;
        if (ms.source.empty()) ms.source = out.loop.path;
        if (!DoMount(ms, out.mount, f)) {
          Failure ignored;
          LoopDetach(out.loop.fd, true, out.loop.path, ignored);
          out.loop.fd = -1;
          return false;
        }
        if (!keep) {
          close(out.loop.fd);
          out.loop.fd = -1;
        }
        return true;
      },
      [](Napi::Env env, AttachMounted& r) -> Napi::Value {
        Napi::Object o = LoopAttachedToJs(env, r.loop);
        if (r.loop.fd < 0) o.Set("fd", env.Null());
        MountDoneToJs(env, o, r.mount);
        return o;
      });
}

}  // namespace

void InitAttachMount(Napi::Env env, Napi::Object exports) {
  exports.Set("loopAttachMount", Napi::Function::New(env, LoopAttachMountJs, "loopAttachMount"));
}

}  // namespace imgmount
