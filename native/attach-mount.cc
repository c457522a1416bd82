// The fused loop attach + mount: LOOP_CONFIGURE and the mount in one worker hop, which keeps a
// mount cycle to a single hop. Translation only: lib/loop/setup.ts decides when it is used
// (LOOP_CONFIGURE binding, no shared device), retries it and checks what it bound; with a
// `pin`, lib/mount/partition.ts decides the target's resolution and the identities it may not
// have, lib/root the intent file.
#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <utility>

#include "faults.h"
#include "files.h"
#include "loop.h"
#include "mount.h"
#include "path.h"

namespace imgmount {

namespace {

bool IsSync(const Napi::CallbackInfo& info, size_t i) { return ArgBool(info[i], false); }

// mountSpec.pin: the target opened in the same hop, before anything is bound, and an intent
// file written once it passed. Each failure of this stage has a syscall named "pin:..." and
// leaves nothing behind: the caller can take its slower path with nothing to undo.
//   { path, resolve, expectName, refuseIds: BigUint64Array [dev, ino, ...], refuseDevs: BigUint64Array,
//     imageOwner?: { fd, uid, gid, mode }, intent?: { tmp, path, data: Buffer, mode } }
// fstat(imageOwner.fd) must show that owner, group and mode (& 07777), else "pin:owner"
// (EPERM); openat2(path, O_PATH|O_DIRECTORY, resolve) -> its description; a kernel name other
// than expectName fails "pin:name" (EXDEV), a refused (dev, ino) or dev "pin:identity"
// (EPERM); then the intent is written as replaceFile(..., { exclusive }) writes it.
struct TargetPin {
  bool wanted = false;
  std::string path;
  uint64_t resolve = 0;
  std::string expectName;
  std::vector<std::pair<uint64_t, uint64_t>> refuseIds;
  std::vector<uint64_t> refuseDevs;
  int ownerFd = -1;
  uint32_t ownerUid = 0, ownerGid = 0, ownerMode = 0;
  bool hasIntent = false;
  std::string intentTmp, intentPath;
  std::vector<uint8_t> intentData;
  mode_t intentMode = 0600;
};

TargetPin ParseTargetPin(Napi::Value v) {
  TargetPin p;
  if (v.IsUndefined() || v.IsNull()) return p;
  if (!v.IsObject()) throw Napi::TypeError::New(v.Env(), "mountSpec.pin must be an object");
  Napi::Object o = v.As<Napi::Object>();
  p.wanted = true;
  p.path = ArgStringValue(o.Get("path"), "pin.path");
  p.resolve = ArgUint64(o.Get("resolve"), "pin.resolve");
  p.expectName = ArgStringValue(o.Get("expectName"), "pin.expectName");
  // Identities as BigUint64Arrays (one read each, not one napi call per number): refuseIds is
  // dev, ino, dev, ino, ...
  std::vector<uint64_t> ids = ArgBigUint64Array(o.Get("refuseIds"), "pin.refuseIds");
  if (ids.size() % 2 != 0) throw Napi::TypeError::New(v.Env(), "pin.refuseIds must hold (dev, ino) pairs");
  for (size_t i = 0; i < ids.size(); i += 2) p.refuseIds.emplace_back(ids[i], ids[i + 1]);
  p.refuseDevs = ArgBigUint64Array(o.Get("refuseDevs"), "pin.refuseDevs");
  Napi::Value owner = o.Get("imageOwner");
  if (owner.IsObject()) {
    Napi::Object oo = owner.As<Napi::Object>();
    p.ownerFd = static_cast<int>(ArgInt64(oo.Get("fd"), "pin.imageOwner.fd"));
    p.ownerUid = static_cast<uint32_t>(ArgUint64(oo.Get("uid"), "pin.imageOwner.uid"));
    p.ownerGid = static_cast<uint32_t>(ArgUint64(oo.Get("gid"), "pin.imageOwner.gid"));
    p.ownerMode = static_cast<uint32_t>(ArgUint64(oo.Get("mode"), "pin.imageOwner.mode") & 07777);
  }
  Napi::Value intent = o.Get("intent");
  if (intent.IsObject()) {
    Napi::Object io = intent.As<Napi::Object>();
    p.hasIntent = true;
    p.intentTmp = ArgStringValue(io.Get("tmp"), "pin.intent.tmp");
    p.intentPath = ArgStringValue(io.Get("path"), "pin.intent.path");
    Napi::Value data = io.Get("data");
    if (!data.IsBuffer()) throw Napi::TypeError::New(v.Env(), "pin.intent.data must be a Buffer");
    Napi::Buffer<uint8_t> b = data.As<Napi::Buffer<uint8_t>>();
    p.intentData.assign(b.Data(), b.Data() + b.Length());
    p.intentMode = static_cast<mode_t>(ArgUint64(io.Get("mode"), "pin.intent.mode") & 07777);
  }
  return p;
}

std::string FdName(int fd) { return "/proc/self/fd/" + std::to_string(fd); }

bool PinFailed(Failure& f) {
  f.syscall = "pin:" + f.syscall;
  return false;
}

// The pin stage: `out` holds the open target when it returns true.
bool PinTarget(const TargetPin& p, PathInfo& out, Failure& f) {
  if (p.ownerFd >= 0) {
    struct stat st;
    if (IMGMOUNT_FAULT_OR("fstat", fstat(p.ownerFd, &st)) != 0) {
      f.Set("fstat", FdName(p.ownerFd));
      return PinFailed(f);
    }
    if (st.st_uid != p.ownerUid || st.st_gid != p.ownerGid || (st.st_mode & 07777) != p.ownerMode) {
      f.Set("owner", FdName(p.ownerFd), "", EPERM);
      return PinFailed(f);
    }
  }
  struct open_how how;
  memset(&how, 0, sizeof how);
  how.flags = O_PATH | O_DIRECTORY | O_CLOEXEC;
  how.resolve = p.resolve;
  int fd = IMGMOUNT_FAULT_OR("openat2", static_cast<int>(syscall(SYS_openat2, AT_FDCWD, p.path.c_str(), &how, sizeof how)));
  if (fd < 0) {
    f.Set("openat2", p.path);
    return PinFailed(f);
  }
  if (!Describe(fd, out, f, p.path)) return PinFailed(f);
  auto refuse = [&](const char* why, int e) {
    close(out.fd);
    out.fd = -1;
    f.Set(why, p.path, out.path, e);
    return PinFailed(f);
  };
  if (out.path != p.expectName) return refuse("name", EXDEV);
  for (const auto& id : p.refuseIds)
    if (id.first == out.dev && id.second == out.ino) return refuse("identity", EPERM);
  for (uint64_t dev : p.refuseDevs)
    if (dev == out.dev) return refuse("identity", EPERM);
  if (p.hasIntent && !ReplaceFile(p.intentTmp, p.intentPath, p.intentData, p.intentMode, true, f)) {
    close(out.fd);
    out.fd = -1;
    return PinFailed(f);
  }
  return true;
}

// Undoes PinTarget after a later step failed: the intent goes, the target fd is closed.
void Unpin(const TargetPin& p, PathInfo& pinned) {
  if (p.hasIntent) unlink(p.intentPath.c_str());
  if (pinned.fd >= 0) close(pinned.fd);
  pinned.fd = -1;
}

// mountSpec.overlay: the partition becomes the lower layer of an overlay this call builds and
// places, with no layer ever in the mount tree (overlayfs takes detached mounts as layers):
//   { upper: MountSpec | null, dirs: [[name, mode], ...], spec: MountSpec }
// mountSpec itself then mounts the partition detached; `upper` (a detached tmpfs) gets `dirs`
// made in its root (mkdirat), of which the first is the upperdir and the second the workdir;
// `spec` (overlay, new API) gets lowerdir+ = the partition's mount and those two as fds, and is
// what the call places (at the pin's target, or spec.targetFd). The layer fds are closed once
// the overlay holds them, so the layers live exactly as long as the overlay.
struct OverlaySpec {
  bool wanted = false;
  bool hasUpper = false;
  MountSpec upper;
  std::vector<std::pair<std::string, mode_t>> dirs;
  MountSpec spec;
};

Napi::Object PropObject(Napi::Object o, const char* key, const char* name) {
  Napi::Value v = o.Get(key);
  if (!v.IsObject()) throw Napi::TypeError::New(o.Env(), std::string(name) + " must be an object");
  return v.As<Napi::Object>();
}

OverlaySpec ParseOverlaySpec(Napi::Value v) {
  OverlaySpec o;
  if (v.IsUndefined() || v.IsNull()) return o;
  Napi::Env env = v.Env();
  if (!v.IsObject()) throw Napi::TypeError::New(env, "mountSpec.overlay must be an object");
  Napi::Object obj = v.As<Napi::Object>();
  o.wanted = true;
  o.spec = ParseMountSpec(PropObject(obj, "spec", "overlay.spec"));
  if (o.spec.legacy || o.spec.detached) throw Napi::TypeError::New(env, "overlay.spec must be a new-API mount that is placed");
  Napi::Value up = obj.Get("upper");
  if (!up.IsUndefined() && !up.IsNull()) {
    o.hasUpper = true;
    o.upper = ParseMountSpec(PropObject(obj, "upper", "overlay.upper"));
    if (o.upper.legacy || !o.upper.detached) throw Napi::TypeError::New(env, "overlay.upper must be a detached new-API mount");
    Napi::Value dirs = obj.Get("dirs");
    if (!dirs.IsArray() || dirs.As<Napi::Array>().Length() != 2) throw Napi::TypeError::New(env, "overlay.dirs must be [[upper, mode], [work, mode]]");
    for (uint32_t i = 0; i < 2; i++) {
      Napi::Value e = dirs.As<Napi::Array>().Get(i);
      if (!e.IsArray()) throw Napi::TypeError::New(env, "overlay.dirs must be [[upper, mode], [work, mode]]");
      std::string name = ArgStringValue(e.As<Napi::Array>().Get(0u), "overlay.dirs[][0]");
      if (name.empty() || name.find('/') != std::string::npos || name == "." || name == "..")
        throw Napi::TypeError::New(env, "overlay.dirs names must be single path components");
      o.dirs.emplace_back(name, static_cast<mode_t>(ArgUint64(e.As<Napi::Array>().Get(1u), "overlay.dirs[][1]") & 07777));
    }
  }
  return o;
}

// The layer fds an overlay build holds until the overlay has them (closing a detached mount's
// fd dissolves it, unless the overlay holds it).
struct Layers {
  int lower = -1;
  int upperMount = -1;
  int dirs[2] = {-1, -1};
  ~Layers() {
    for (int fd : {lower, upperMount, dirs[0], dirs[1]})
      if (fd >= 0) close(fd);
  }
};

// Builds the overlay over the detached lower mount `layers.lower` and places it as ov.spec says.
bool MountOverlay(OverlaySpec ov, Layers& layers, MountDone& out, Failure& f) {
  ov.spec.fdOptions.emplace_back("lowerdir+", layers.lower);
  if (ov.hasUpper) {
    MountDone upper;
    if (!DoMount(ov.upper, upper, f)) return false;
    layers.upperMount = upper.mountFd;
    for (int i = 0; i < 2; i++) {
      const std::string& name = ov.dirs[static_cast<size_t>(i)].first;
      std::string step = "mkdirat(" + name + ")";
      if (IMGMOUNT_FAULT_OR(step.c_str(), mkdirat(layers.upperMount, name.c_str(), ov.dirs[static_cast<size_t>(i)].second)) != 0)
        return f.Set("mkdirat", name, ov.spec.target);
      layers.dirs[i] = IMGMOUNT_FAULT_OR("openat(layer dir)", openat(layers.upperMount, name.c_str(), O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
      if (layers.dirs[i] < 0) return f.Set("openat", name, ov.spec.target);
    }
    ov.spec.fdOptions.emplace_back("upperdir", layers.dirs[0]);
    ov.spec.fdOptions.emplace_back("workdir", layers.dirs[1]);
  }
  return DoMount(ov.spec, out, f);
}

// loopAttachMount(loopSpec, mountSpec, keepLoopFd[, sync])
//   -> { fd | null, number, path, status, mountFd | null, messages[, target] }
// One worker hop for a whole attach + mount. A mount spec without a source mounts the loop device.
// If the mount fails, the device this call bound is released (LOOP_CLR_FD + close) and the
// error names the failing step. Unless keepLoopFd, the loop fd is closed once mounted (with
// LO_FLAGS_AUTOCLEAR the device then goes away with the mount).
struct AttachMounted {
  LoopAttached loop;
  MountDone mount;
  PathInfo target;  // with a pin: the target it opened (the caller owns its fd)
};
Napi::Value LoopAttachMountJs(const Napi::CallbackInfo& info) {
  LoopAttachSpec ls = ParseLoopAttachSpec(ArgObject(info, 0, "loopSpec"));
  if (ls.legacy) throw Napi::TypeError::New(info.Env(), "loopAttachMount needs method 'configure'");
  Napi::Object mountSpec = ArgObject(info, 1, "mountSpec");
  // With a pin, the spec's `target` names it in messages and the fd is the one opened below.
  TargetPin pin = ParseTargetPin(mountSpec.Get("pin"));
  MountSpec ms = ParseMountSpec(mountSpec);
  OverlaySpec ov = ParseOverlaySpec(mountSpec.Get("overlay"));
  if (pin.wanted && (ov.wanted ? ov.spec.targetFd : ms.targetFd) >= 0) throw Napi::TypeError::New(info.Env(), "mountSpec has both pin and targetFd");
  if (ov.wanted && (ms.legacy || !ms.detached)) throw Napi::TypeError::New(info.Env(), "an overlay's lower layer must be a detached new-API mount");
  bool keep = ArgBoolean(info[2], "keepLoopFd");
  return Dispatch<AttachMounted>(
      info, IsSync(info, 3), "imgmount:loop.attachMount",
      [ls, ms, keep, pin, ov](AttachMounted& out, Failure& f) mutable {
        if (pin.wanted) {
          if (!PinTarget(pin, out.target, f)) return false;
          (ov.wanted ? ov.spec.targetFd : ms.targetFd) = out.target.fd;
        }
        if (!LoopAttach(ls, out.loop, f)) {
          Unpin(pin, out.target);
          return false;
        }
        if (ms.source.empty()) ms.source = out.loop.path;
        bool mounted;
        if (ov.wanted) {
          Layers layers;
          MountDone lower;
          mounted = DoMount(ms, lower, f);
          if (mounted) {
            layers.lower = lower.mountFd;
            mounted = MountOverlay(ov, layers, out.mount, f);
            out.mount.messages.insert(out.mount.messages.begin(), lower.messages.begin(), lower.messages.end());
          }
        } else {
          mounted = DoMount(ms, out.mount, f);
        }
        if (!mounted) {
          Failure ignored;
          LoopDetach(out.loop.fd, true, out.loop.path, ignored);
          out.loop.fd = -1;
          Unpin(pin, out.target);
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
        if (r.target.fd >= 0) o.Set("target", PathInfoToJs(env, r.target));
        return o;
      });
}

// overlayLayersProbe([sync]) -> { errno, syscall }: an overlay built as mountSpec.overlay
// builds one, over two fresh tmpfs mounts, kept detached and dropped. errno 0: this kernel
// takes detached mounts as overlay layers by fd (lowerdir+, upperdir, workdir).
struct ProbeResult {
  int err = 0;
  std::string syscall;
};
Napi::Value OverlayLayersProbeJs(const Napi::CallbackInfo& info) {
  return Dispatch<ProbeResult>(
      info, IsSync(info, 0), "imgmount:mount.overlayProbe",
      [](ProbeResult& r, Failure&) {
        auto tmpfs = [](bool detached) {
          MountSpec s;
          s.fstype = "tmpfs";
          s.source = "tmpfs";
          s.target = "(probe)";
          s.options.push_back({"size", "1m", true});
          s.detached = detached;
          return s;
        };
        Failure f;
        Layers layers;
        MountDone lower, top;
        OverlaySpec ov;
        ov.wanted = ov.hasUpper = true;
        ov.upper = tmpfs(true);
        ov.dirs = {{"upper", 0755}, {"work", 0700}};
        ov.spec.fstype = "overlay";
        ov.spec.source = "overlay";
        ov.spec.target = "(probe)";
        ov.spec.detached = true;
        if (DoMount(tmpfs(true), lower, f)) {
          layers.lower = lower.mountFd;
          if (MountOverlay(ov, layers, top, f)) close(top.mountFd);
        }
        r.err = f.err;
        r.syscall = f.syscall;
        return true;
      },
      [](Napi::Env env, ProbeResult& r) -> Napi::Value {
        Napi::Object o = Napi::Object::New(env);
        o.Set("errno", Napi::Number::New(env, r.err));
        o.Set("syscall", Napi::String::New(env, r.syscall));
        return o;
      });
}

}  // namespace

void InitAttachMount(Napi::Env env, Napi::Object exports) {
  exports.Set("overlayLayersProbe", Napi::Function::New(env, OverlayLayersProbeJs, "overlayLayersProbe"));
  exports.Set("loopAttachMount", Napi::Function::New(env, LoopAttachMountJs, "loopAttachMount"));
}

}  // namespace imgmount
