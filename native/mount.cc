// Mounting: thin wrappers of mount(2)/umount2 and the new mount API (fsopen, fsconfig, fsmount,
// mount_setattr, move_mount, open_tree), and DoMount, which the fused loop attach + mount
// (attach-mount.cc) shares. Which API to use, flags and defaults are decided in lib/mount/.
#include "mount.h"

#include <fcntl.h>
#include <sys/stat.h>

#include <cstring>
#include <unistd.h>

#include "faults.h"
#include "syscalls.h"

namespace imgmount {

namespace {

void CollectMessage(void* ctx, const char* msg, size_t len) {
  static_cast<std::vector<std::string>*>(ctx)->emplace_back(msg, len);
}

// Records a failed step of an fs context together with what the kernel wrote into it.
bool FailCtx(Failure& f, int fsfd, const std::string& call, const MountSpec& s) {
  f.Set(call.c_str(), s.source, s.target);
  if (fsfd >= 0) imgmount_drain_fs_messages(fsfd, CollectMessage, &f.kernelMessages);
  return false;
}

// The mount's identity, so that it can be recognised later wherever it was moved to.
uint64_t MountIdOf(int mfd) {
  struct statx sx;
  memset(&sx, 0, sizeof sx);
  if (statx(mfd, "", AT_EMPTY_PATH, STATX_MNT_ID_UNIQUE | STATX_MNT_ID, &sx) != 0) return 0;
  return (sx.stx_mask & (STATX_MNT_ID_UNIQUE | STATX_MNT_ID)) ? sx.stx_mnt_id : 0;
}

bool DoNewMount(const MountSpec& s, MountDone& out, Failure& f) {
  int fsfd = IMGMOUNT_FAULT_OR("fsopen", imgmount_fsopen(s.fstype.c_str(), FSOPEN_CLOEXEC));
  if (fsfd < 0) return f.Set("fsopen", s.source, s.target);
  auto fail = [&](const std::string& call) {
    FailCtx(f, fsfd, call, s);
    close(fsfd);
    return false;
  };
  if (!s.source.empty() &&
      IMGMOUNT_FAULT_OR("fsconfig(source)", imgmount_fsconfig(fsfd, IMGMOUNT_FSCONFIG_SET_STRING, "source", s.source.c_str(), 0)) != 0)
    return fail("fsconfig(source)");
  for (const FsOption& o : s.options) {
    std::string step = "fsconfig(" + o.key + ")";
    int rc = imgmount_fault(step.c_str()) != 0 ? -1
             : o.hasValue ? imgmount_fsconfig(fsfd, IMGMOUNT_FSCONFIG_SET_STRING, o.key.c_str(), o.value.c_str(), 0)
                          : imgmount_fsconfig(fsfd, IMGMOUNT_FSCONFIG_SET_FLAG, o.key.c_str(), nullptr, 0);
    if (rc != 0) return fail(step);
  }
  for (const auto& o : s.fdOptions) {
    std::string step = "fsconfig(" + o.first + ")";
    if (IMGMOUNT_FAULT_OR(step.c_str(), imgmount_fsconfig(fsfd, IMGMOUNT_FSCONFIG_SET_FD, o.first.c_str(), nullptr, o.second)) != 0) return fail(step);
  }
  if (IMGMOUNT_FAULT_OR("fsconfig(FSCONFIG_CMD_CREATE)", imgmount_fsconfig(fsfd, IMGMOUNT_FSCONFIG_CMD_CREATE, nullptr, nullptr, 0)) != 0)
    return fail("fsconfig(FSCONFIG_CMD_CREATE)");
  int mfd = IMGMOUNT_FAULT_OR("fsmount", imgmount_fsmount(fsfd, FSMOUNT_CLOEXEC, s.attrs));
  if (mfd < 0) return fail("fsmount");
  imgmount_drain_fs_messages(fsfd, CollectMessage, &out.messages);
  close(fsfd);
  out.mountId = MountIdOf(mfd);
  if (s.usernsFd >= 0) {
    struct imgmount_mount_attr attr = {};
    attr.attr_set = MOUNT_ATTR_IDMAP;
    attr.userns_fd = static_cast<uint64_t>(s.usernsFd);
    if (IMGMOUNT_FAULT_OR("mount_setattr(MOUNT_ATTR_IDMAP)", imgmount_mount_setattr(mfd, "", AT_EMPTY_PATH, &attr, sizeof attr)) != 0) {
      f.Set("mount_setattr(MOUNT_ATTR_IDMAP)", s.source, s.target);
      close(mfd);
      return false;
    }
  }
  if (s.detached) {
    out.mountFd = mfd;
    return true;
  }
  int moved = imgmount_fault("move_mount") != 0 ? -1
              : s.targetFd >= 0
                  ? imgmount_move_mount(mfd, "", s.targetFd, "", MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH)
                  : imgmount_move_mount(mfd, "", AT_FDCWD, s.target.c_str(), MOVE_MOUNT_F_EMPTY_PATH);
  if (moved != 0) {
    f.Set("move_mount", s.source, s.target);
    close(mfd);
    return false;
  }
  if (s.keepMountFd) out.mountFd = mfd;
  else close(mfd);
  return true;
}

// mount(2) reaches a pinned directory through its fd's /proc link, which the kernel follows to
// exactly the dentry the fd holds.
std::string LegacyTarget(const MountSpec& s) {
  return s.targetFd >= 0 ? "/proc/self/fd/" + std::to_string(s.targetFd) : s.target;
}

}  // namespace

bool DoMount(const MountSpec& s, MountDone& out, Failure& f) {
  if (!s.legacy) return DoNewMount(s, out, f);
  if (IMGMOUNT_FAULT_OR("mount", mount(s.source.empty() ? nullptr : s.source.c_str(), LegacyTarget(s).c_str(),
                                       s.fstype.empty() ? nullptr : s.fstype.c_str(), s.flags, s.hasData ? s.data.c_str() : nullptr)) != 0)
    return f.Set("mount", s.source, s.target);
  return true;
}

static std::string OptString(Napi::Object o, const char* key) {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined() || v.IsNull()) return "";
  if (!v.IsString()) throw Napi::TypeError::New(o.Env(), std::string(key) + " must be a string");
  return v.As<Napi::String>().Utf8Value();
}

MountSpec ParseMountSpec(Napi::Object o) {
  Napi::Env env = o.Env();
  MountSpec s;
  std::string api = OptString(o, "api");
  if (api == "legacy") s.legacy = true;
  else if (api != "new") throw Napi::TypeError::New(env, "api must be 'new' or 'legacy'");
  s.source = OptString(o, "source");
  s.target = OptString(o, "target");
  Napi::Value tfd = o.Get("targetFd");
  if (tfd.IsNumber()) s.targetFd = tfd.As<Napi::Number>().Int32Value();
  s.fstype = OptString(o, "fstype");
  Napi::Value v = o.Get("flags");
  if (!v.IsUndefined()) s.flags = static_cast<unsigned long>(ArgUint64(v, "flags"));
  v = o.Get("data");
  if (v.IsString()) {
    s.hasData = true;
    s.data = v.As<Napi::String>().Utf8Value();
  }
  v = o.Get("options");
  if (v.IsArray()) {
    Napi::Array a = v.As<Napi::Array>();
    for (uint32_t i = 0; i < a.Length(); i++) {
      Napi::Value e = a.Get(i);
      if (!e.IsArray()) throw Napi::TypeError::New(env, "options must be [key, value | null] pairs");
      Napi::Array pair = e.As<Napi::Array>();
      FsOption opt;
      if (!pair.Get(0u).IsString()) throw Napi::TypeError::New(env, "option key must be a string");
      opt.key = pair.Get(0u).As<Napi::String>().Utf8Value();
      Napi::Value val = pair.Get(1u);
      if (val.IsString()) {
        opt.hasValue = true;
        opt.value = val.As<Napi::String>().Utf8Value();
      }
      s.options.push_back(opt);
    }
  }
  v = o.Get("attrs");
  if (!v.IsUndefined()) s.attrs = static_cast<unsigned int>(ArgUint64(v, "attrs"));
  v = o.Get("usernsFd");
  if (v.IsNumber()) s.usernsFd = v.As<Napi::Number>().Int32Value();
  s.detached = ArgBool(o.Get("detached"), false);
  s.keepMountFd = ArgBool(o.Get("keepMountFd"), false);
  if (s.legacy && (s.detached || s.usernsFd >= 0 || s.keepMountFd))
    throw Napi::TypeError::New(env, "detached, keepMountFd and usernsFd need api 'new'");
  if (!s.detached && s.target.empty() && s.targetFd < 0) throw Napi::TypeError::New(env, "target must be a non-empty string");
  return s;
}

static Napi::Array Strings(Napi::Env env, const std::vector<std::string>& v) {
  Napi::Array a = Napi::Array::New(env, v.size());
  for (size_t i = 0; i < v.size(); i++) a.Set(static_cast<uint32_t>(i), Napi::String::New(env, v[i]));
  return a;
}

void MountDoneToJs(Napi::Env env, Napi::Object r, const MountDone& d) {
  r.Set("mountFd", d.mountFd >= 0 ? Napi::Value(Napi::Number::New(env, d.mountFd)) : env.Null());
  r.Set("messages", Strings(env, d.messages));
  r.Set("mountId", BigOrNumber(env, d.mountId));
}

namespace {

bool IsSync(const Napi::CallbackInfo& info, size_t i) { return ArgBool(info[i], false); }

std::string OptArgString(const Napi::CallbackInfo& info, size_t i, const char* name) {
  if (info[i].IsUndefined() || info[i].IsNull()) return "";
  return ArgString(info, i, name);
}

// mount(source | null, target, fstype | null, flags, data | null[, sync]) -> void
Napi::Value MountJs(const Napi::CallbackInfo& info) {
  MountSpec s;
  s.legacy = true;
  s.source = OptArgString(info, 0, "source");
  s.target = ArgString(info, 1, "target");
  s.fstype = OptArgString(info, 2, "fstype");
  s.flags = static_cast<unsigned long>(ArgUint64(info[3], "flags"));
  if (info[4].IsString()) {
    s.hasData = true;
    s.data = info[4].As<Napi::String>().Utf8Value();
  }
  return Dispatch<MountDone>(
      info, IsSync(info, 5), "imgmount:mount.mount",
      [s](MountDone& out, Failure& f) { return DoMount(s, out, f); },
      [](Napi::Env env, MountDone&) { return env.Undefined(); });
}

// umount(target, flags[, sync]) -> void
Napi::Value UmountJs(const Napi::CallbackInfo& info) {
  std::string target = ArgString(info, 0, "target");
  int flags = ArgInt(info, 1, "flags");
  return Dispatch<int>(
      info, IsSync(info, 2), "imgmount:mount.umount",
      [target, flags](int&, Failure& f) {
        if (IMGMOUNT_FAULT_OR("umount2", umount2(target.c_str(), flags)) != 0) return f.Set("umount2", target);
        return true;
      },
      [](Napi::Env env, int&) { return env.Undefined(); });
}

// fsMount(spec[, sync]) -> { mountFd | null, messages }
Napi::Value FsMountJs(const Napi::CallbackInfo& info) {
  MountSpec s = ParseMountSpec(ArgObject(info, 0, "spec"));
  if (s.legacy) throw Napi::TypeError::New(info.Env(), "fsMount needs api 'new'");
  return Dispatch<MountDone>(
      info, IsSync(info, 1), "imgmount:mount.fsmount",
      [s](MountDone& out, Failure& f) { return DoMount(s, out, f); },
      [](Napi::Env env, MountDone& d) -> Napi::Value {
        Napi::Object r = Napi::Object::New(env);
        MountDoneToJs(env, r, d);
        return r;
      });
}

// openTree(dirfd, path, flags[, sync]) -> fd     (open_tree; OPEN_TREE_CLOEXEC is always added;
// dirfd -1 is AT_FDCWD; an fd with path "" and AT_EMPTY_PATH clones what the fd holds)
Napi::Value OpenTreeJs(const Napi::CallbackInfo& info) {
  int dirfd = ArgInt(info, 0, "dirfd");
  std::string path = info[1].IsString() ? info[1].As<Napi::String>().Utf8Value() : "";
  unsigned int flags = static_cast<unsigned int>(ArgUint64(info[2], "flags")) | OPEN_TREE_CLOEXEC;
  if (dirfd < 0) dirfd = AT_FDCWD;
  return Dispatch<int>(
      info, IsSync(info, 3), "imgmount:mount.openTree",
      [dirfd, path, flags](int& out, Failure& f) {
        out = IMGMOUNT_FAULT_OR("open_tree", imgmount_open_tree(dirfd, path.c_str(), flags));
        if (out < 0) return f.Set("open_tree", path);
        return true;
      },
      [](Napi::Env env, int& fd) { return Napi::Number::New(env, fd); });
}

// mountSetattr(fd, path, atFlags, { attrSet, attrClr, propagation, usernsFd }[, sync]) -> void
Napi::Value MountSetattrJs(const Napi::CallbackInfo& info) {
  int fd = ArgInt(info, 0, "fd");
  std::string path = info[1].IsString() ? info[1].As<Napi::String>().Utf8Value() : "";
  unsigned int atFlags = static_cast<unsigned int>(ArgUint64(info[2], "atFlags"));
  Napi::Object a = ArgObject(info, 3, "attr");
  struct imgmount_mount_attr attr = {};
  if (!a.Get("attrSet").IsUndefined()) attr.attr_set = ArgUint64(a.Get("attrSet"), "attrSet");
  if (!a.Get("attrClr").IsUndefined()) attr.attr_clr = ArgUint64(a.Get("attrClr"), "attrClr");
  if (!a.Get("propagation").IsUndefined()) attr.propagation = ArgUint64(a.Get("propagation"), "propagation");
  if (a.Get("usernsFd").IsNumber()) attr.userns_fd = ArgUint64(a.Get("usernsFd"), "usernsFd");
  const char* call = (attr.attr_set & MOUNT_ATTR_IDMAP) ? "mount_setattr(MOUNT_ATTR_IDMAP)" : "mount_setattr";
  return Dispatch<int>(
      info, IsSync(info, 4), "imgmount:mount.setattr",
      [fd, path, atFlags, attr, call](int&, Failure& f) mutable {
        if (IMGMOUNT_FAULT_OR(call, imgmount_mount_setattr(fd, path.c_str(), atFlags, &attr, sizeof attr)) != 0) return f.Set(call, path);
        return true;
      },
      [](Napi::Env env, int&) { return env.Undefined(); });
}

// moveMount(fromFd, fromPath, toFd, toPath, flags[, sync]) -> void    (toFd -1: AT_FDCWD)
Napi::Value MoveMountJs(const Napi::CallbackInfo& info) {
  int from = ArgInt(info, 0, "fromFd");
  std::string fromPath = info[1].IsString() ? info[1].As<Napi::String>().Utf8Value() : "";
  int toFd = ArgInt(info, 2, "toFd");
  std::string to = info[3].IsString() ? info[3].As<Napi::String>().Utf8Value() : "";
  unsigned int flags = static_cast<unsigned int>(ArgUint64(info[4], "flags"));
  if (toFd < 0) toFd = AT_FDCWD;
  return Dispatch<int>(
      info, IsSync(info, 5), "imgmount:mount.move",
      [from, fromPath, toFd, to, flags](int&, Failure& f) {
        if (IMGMOUNT_FAULT_OR("move_mount", imgmount_move_mount(from, fromPath.c_str(), toFd, to.c_str(), flags)) != 0)
          return f.Set("move_mount", fromPath, to);
        return true;
      },
      [](Napi::Env env, int&) { return env.Undefined(); });
}

// mountApiProbe([sync]) -> { fsopen: errno, mountSetattr: errno } of harmless calls:
// fsopen(NULL) and mount_setattr(-1, NULL, 0, NULL, 0). ENOSYS = missing, EPERM = filtered.
struct Probe {
  int fsopen = 0;
  int setattr = 0;
};
Napi::Value MountApiProbe(const Napi::CallbackInfo& info) {
  return Dispatch<Probe>(
      info, IsSync(info, 0), "imgmount:mount.probe",
      [](Probe& p, Failure&) {
        int fd = imgmount_fsopen(nullptr, FSOPEN_CLOEXEC);
        p.fsopen = fd < 0 ? errno : 0;
        if (fd >= 0) close(fd);
        p.setattr = imgmount_mount_setattr(-1, nullptr, 0, nullptr, 0) != 0 ? errno : 0;
        return true;
      },
      [](Napi::Env env, Probe& p) -> Napi::Value {
        Napi::Object r = Napi::Object::New(env);
        r.Set("fsopen", Napi::Number::New(env, p.fsopen));
        r.Set("mountSetattr", Napi::Number::New(env, p.setattr));
        return r;
      });
}

}  // namespace

void InitMount(Napi::Env env, Napi::Object exports) {
  exports.Set("mount", Napi::Function::New(env, MountJs, "mount"));
  exports.Set("umount", Napi::Function::New(env, UmountJs, "umount"));
  exports.Set("fsMount", Napi::Function::New(env, FsMountJs, "fsMount"));
  exports.Set("openTree", Napi::Function::New(env, OpenTreeJs, "openTree"));
  exports.Set("mountSetattr", Napi::Function::New(env, MountSetattrJs, "mountSetattr"));
  exports.Set("moveMount", Napi::Function::New(env, MoveMountJs, "moveMount"));
  exports.Set("mountApiProbe", Napi::Function::New(env, MountApiProbe, "mountApiProbe"));
}

}  // namespace imgmount
