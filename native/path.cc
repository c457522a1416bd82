// Pinned paths: opening a path once into an fd, resolved without escaping a given root, and
// acting on that fd afterwards (lib/path/ decides which resolution a path gets and what is
// acceptable; this file only performs it).
//
//   openAt(dirfd, path, flags, resolve[, sync])   openat(2), or openat2(2) when resolve != 0
//   walkAt(dirfd, path, flags, mode[, sync])       the same resolution in user space, one
//                                                  O_PATH|O_NOFOLLOW step per component, for
//                                                  kernels without openat2 (before 5.6)
//   openMountRoot(fd[, sync])                      the root of the mount stacked on a pinned
//                                                  directory (for mount(2)'s remounts)
//   umountAt(dirfd, name, flags, display[, sync[, closeDirFd]])
//                                                  umount2 of a pinned mount point (name "")
//                                                  or of dirfd/name without following name
//   makeDirs(entries[, sync])                      new directories of ours, pinned as made
//   removeDirs(paths[, sync[, unlinkAfter]])       rmdir of each, in order (then unlink a file)
//
// Every call that returns an fd also returns its fstat, mount id and the kernel's name for it
// (readlink of /proc/self/fd/N) from the same worker hop.
#include <fcntl.h>
#include <limits.h>
#include <linux/openat2.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstring>
#include <deque>

#include "addon.h"
#include "faults.h"
#include "path.h"
#include "syscalls.h"


namespace imgmount {

namespace {

std::string FdPath(int fd) { return "/proc/self/fd/" + std::to_string(fd); }

std::string KernelName(int fd) {
  char buf[PATH_MAX + 1];
  ssize_t n = readlink(FdPath(fd).c_str(), buf, PATH_MAX);
  return n > 0 ? std::string(buf, static_cast<size_t>(n)) : std::string();
}

// Fills everything but fd from an open fd; closes it on failure.
int DirFd(const Napi::CallbackInfo& info, size_t i) {
  int fd = ArgInt(info, i, "dirfd");
  return fd < 0 ? AT_FDCWD : fd;
}

bool IsSync(const Napi::CallbackInfo& info, size_t i) { return ArgBool(info[i], false); }

// openAt(dirfd, path, flags, resolve[, sync]) -> PathInfo       (O_CLOEXEC is always added)
Napi::Value OpenAtJs(const Napi::CallbackInfo& info) {
  int dirfd = DirFd(info, 0);
  std::string path = ArgString(info, 1, "path");
  int flags = ArgInt(info, 2, "flags") | O_CLOEXEC;
  uint64_t resolve = ArgUint64(info[3], "resolve");
  return Dispatch<PathInfo>(
      info, IsSync(info, 4), "imgmount:path.openAt",
      [dirfd, path, flags, resolve](PathInfo& out, Failure& f) {
        int fd;
        if (resolve == 0) {
          fd = IMGMOUNT_FAULT_OR("openat", openat(dirfd, path.c_str(), flags));
          if (fd < 0) return f.Set("openat", path);
        } else {
          struct open_how how;
          memset(&how, 0, sizeof how);
          how.flags = static_cast<uint64_t>(flags);
          how.resolve = resolve;
          fd = IMGMOUNT_FAULT_OR("openat2", static_cast<int>(syscall(SYS_openat2, dirfd, path.c_str(), &how, sizeof how)));
          if (fd < 0) return f.Set("openat2", path);
        }
        return Describe(fd, out, f, path);
      },
      PathInfoToJs);
}

// ---- walkAt: RESOLVE_IN_ROOT and RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS without openat2 ----
//
// Resolution holds an fd for every directory on the way (a stack rooted at dirfd), so ".."
// pops our own stack and never asks the kernel for a parent a concurrent rename could have
// moved; each step is openat(top, name, O_PATH|O_NOFOLLOW), which cannot follow anything.
// In-root mode reads a symlink with readlinkat and splices its text into the remaining
// components (an absolute one restarts at the root), as openat2(RESOLVE_IN_ROOT) does.

constexpr int kMaxLinks = 40;

void SplitInto(const std::string& s, std::deque<std::string>& out, bool front) {
  std::deque<std::string> parts;
  size_t i = 0;
  while (i <= s.size()) {
    size_t j = s.find('/', i);
    if (j == std::string::npos) j = s.size();
    std::string c = s.substr(i, j - i);
    if (!c.empty() && c != ".") parts.push_back(c);
    i = j + 1;
  }
  if (front) out.insert(out.begin(), parts.begin(), parts.end());
  else out.insert(out.end(), parts.begin(), parts.end());
}

struct FdStack {
  std::vector<int> fds;
  ~FdStack() {
    for (int fd : fds) close(fd);
  }
  int top() const { return fds.back(); }
  void popToRoot() {
    while (fds.size() > 1) {
      close(fds.back());
      fds.pop_back();
    }
  }
};

bool Walk(int dirfd, const std::string& path, int flags, bool inRoot, bool noXdev, PathInfo& out, Failure& f) {
  if (!inRoot && !path.empty() && path[0] == '/') return f.Set("walk(/)", path, "", EXDEV);  // as RESOLVE_BENEATH
  FdStack st;
  int root = IMGMOUNT_FAULT_OR("openat", openat(dirfd, ".", O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (root < 0) return f.Set("openat", ".");
  st.fds.push_back(root);
  struct stat rootSt;
  if (fstat(root, &rootSt) != 0) return f.Set("fstat", path);
  std::deque<std::string> rest;
  SplitInto(path, rest, false);
  int links = 0;
  while (!rest.empty()) {
    std::string c = rest.front();
    rest.pop_front();
    if (c == "..") {
      if (st.fds.size() > 1) {
        close(st.fds.back());
        st.fds.pop_back();
      } else if (!inRoot) {
        return f.Set("walk(..)", path, "", EXDEV);  // RESOLVE_BENEATH: no way above dirfd
      }
      continue;
    }
    int next = IMGMOUNT_FAULT_OR("openat", openat(st.top(), c.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC));
    if (next < 0) return f.Set("openat", path);
    struct stat ns;
    if (fstat(next, &ns) != 0) {
      close(next);
      return f.Set("fstat", path);
    }
    if (S_ISLNK(ns.st_mode)) {
      bool last = rest.empty();
      if (!inRoot || (last && (flags & O_NOFOLLOW)) || ++links > kMaxLinks) {
        close(next);
        return f.Set("walk(symlink)", path, "", ELOOP);
      }
      char buf[PATH_MAX + 1];
      ssize_t n = readlinkat(next, "", buf, PATH_MAX);
      close(next);
      if (n < 0) return f.Set("readlinkat", path);
      std::string target(buf, static_cast<size_t>(n));
      if (!target.empty() && target[0] == '/') st.popToRoot();
      SplitInto(target, rest, true);
      continue;
    }
    if (noXdev && ns.st_dev != rootSt.st_dev) {
      close(next);
      return f.Set("walk(xdev)", path, "", EXDEV);
    }
    if (!rest.empty() && !S_ISDIR(ns.st_mode)) {
      close(next);
      return f.Set("openat", path, "", ENOTDIR);
    }
    st.fds.push_back(next);
  }
  // The result, opened as asked: O_PATH directly; anything else by reopening the fd itself.
  int want = flags & ~O_NOFOLLOW;
  int fd;
  if ((want & O_PATH) != 0) {
    struct stat last;
    if (fstat(st.top(), &last) != 0) return f.Set("fstat", path);
    if ((want & O_DIRECTORY) && !S_ISDIR(last.st_mode)) return f.Set("openat", path, "", ENOTDIR);
    fd = fcntl(st.top(), F_DUPFD_CLOEXEC, 0);
    if (fd < 0) return f.Set("fcntl(F_DUPFD_CLOEXEC)", path);
  } else {
    fd = IMGMOUNT_FAULT_OR("open", open(FdPath(st.top()).c_str(), want | O_CLOEXEC));
    if (fd < 0) return f.Set("open", path);
  }
  return Describe(fd, out, f, path);
}

// walkAt(dirfd, path, flags, { inRoot, noXdev }[, sync]) -> PathInfo
Napi::Value WalkAtJs(const Napi::CallbackInfo& info) {
  int dirfd = DirFd(info, 0);
  std::string path = ArgString(info, 1, "path");
  int flags = ArgInt(info, 2, "flags");
  Napi::Object mode = ArgObject(info, 3, "mode");
  bool inRoot = ArgBool(mode.Get("inRoot"), false);
  bool noXdev = ArgBool(mode.Get("noXdev"), false);
  return Dispatch<PathInfo>(
      info, IsSync(info, 4), "imgmount:path.walkAt",
      [dirfd, path, flags, inRoot, noXdev](PathInfo& out, Failure& f) { return Walk(dirfd, path, flags, inRoot, noXdev, out, f); },
      PathInfoToJs);
}

// openMountRoot(fd[, sync]) -> PathInfo
// A pinned directory fd names the dentry a mount was stacked on, and lookups through it do
// not cross into that mount. Its root is found through the parent: openat(fd, "..") (no
// mount is crossed going up from a non-root dentry), then the one name, not followed, whose
// lookup does cross into the topmost mount there. Checked: the result is a mount root and
// its ".." is that same parent, so a rename of the name in between is detected (ESTALE).
Napi::Value OpenMountRootJs(const Napi::CallbackInfo& info) {
  int fd = ArgInt(info, 0, "fd");
  return Dispatch<PathInfo>(
      info, IsSync(info, 1), "imgmount:path.openMountRoot",
      [fd](PathInfo& out, Failure& f) {
        std::string name = KernelName(fd);
        size_t slash = name.rfind('/');
        if (name.empty() || slash == std::string::npos || slash + 1 >= name.size()) return f.Set("readlink", FdPath(fd), "", ENOENT);
        std::string base = name.substr(slash + 1);
        int parent = IMGMOUNT_FAULT_OR("openat(..)", openat(fd, "..", O_PATH | O_DIRECTORY | O_CLOEXEC));
        if (parent < 0) return f.Set("openat(..)", name);
        int root = IMGMOUNT_FAULT_OR("openat", openat(parent, base.c_str(), O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
        if (root < 0) {
          f.Set("openat", name);
          close(parent);
          return false;
        }
        int up = openat(root, "..", O_PATH | O_DIRECTORY | O_CLOEXEC);
        struct stat a, b;
        bool same = up >= 0 && fstat(up, &a) == 0 && fstat(parent, &b) == 0 && a.st_dev == b.st_dev && a.st_ino == b.st_ino;
        if (up >= 0) close(up);
        close(parent);
        if (!Describe(root, out, f, name)) return false;
        if (!same || !out.mountRoot) {
          close(out.fd);
          out.fd = -1;
          return f.Set("openMountRoot", name, "", ESTALE);
        }
        return true;
      },
      PathInfoToJs);
}

// umountAt(dirfd, name, flags, display[, sync[, closeDirFd[, unlinkAfter]]]) -> 0 | -errno
// name "": umount2("/proc/self/fd/D"): the kernel looks mount points up with LOOKUP_MOUNTPOINT,
// so this unmounts the topmost mount stacked on the pinned dentry, whatever its name is now.
// Otherwise "/proc/self/fd/D/name" with UMOUNT_NOFOLLOW: a symlink at name is never followed.
// closeDirFd: once unmounted, dirfd is closed in the same hop (a failed umount keeps it).
// unlinkAfter: once unmounted, this file is unlinked in the same hop (a mount's record, removed
// with what it describes); the result is 0, or -errno of that unlink (the caller decides).
Napi::Value UmountAtJs(const Napi::CallbackInfo& info) {
  int dirfd = ArgInt(info, 0, "dirfd");
  std::string name = info[1].IsString() ? info[1].As<Napi::String>().Utf8Value() : "";
  int flags = ArgInt(info, 2, "flags");
  std::string display = info[3].IsString() ? info[3].As<Napi::String>().Utf8Value() : "";
  bool closeDirFd = ArgBool(info[5], false);
  std::string unlinkAfter = info.Length() > 6 && info[6].IsString() ? info[6].As<Napi::String>().Utf8Value() : "";
  if (name.find('/') != std::string::npos) throw Napi::TypeError::New(info.Env(), "name must be a single path component");
  return Dispatch<int>(
      info, IsSync(info, 4), "imgmount:path.umountAt",
      [dirfd, name, flags, display, closeDirFd, unlinkAfter](int& unlinked, Failure& f) {
        std::string p = FdPath(dirfd);
        int fl = flags;
        if (!name.empty()) {
          p += "/" + name;
          fl |= UMOUNT_NOFOLLOW;
        }
        if (IMGMOUNT_FAULT_OR("umount2", umount2(p.c_str(), fl)) != 0) return f.Set("umount2", display.empty() ? p : display);
        if (closeDirFd) close(dirfd);
        unlinked = 0;
        if (!unlinkAfter.empty() && IMGMOUNT_FAULT_OR("unlink", unlink(unlinkAfter.c_str())) != 0) unlinked = -errno;
        return true;
      },
      [](Napi::Env env, int& unlinked) { return Napi::Number::New(env, unlinked); });
}

// makeDirs([{ path, mode, pin }, ...][, sync]) -> Array<PathInfo | null>
// mkdir of each path in order (an existing one is EEXIST: these are new directories of ours),
// and for those with pin, open(O_PATH|O_DIRECTORY|O_NOFOLLOW) of what was just made, described
// as openAt does: a session's directories made and pinned in one hop. Stops at the first
// failure, closing the fds opened so far; directories made stay (the caller's record names them).
struct DirSpec {
  std::string path;
  mode_t mode;
  bool pin;
};
struct MadeDirs {
  std::vector<PathInfo> pinned;  // fd -1 where not pinned
};
Napi::Value MakeDirsJs(const Napi::CallbackInfo& info) {
  if (!info[0].IsArray()) throw Napi::TypeError::New(info.Env(), "entries must be an array of { path, mode, pin }");
  Napi::Array a = info[0].As<Napi::Array>();
  std::vector<DirSpec> specs;
  for (uint32_t i = 0; i < a.Length(); i++) {
    Napi::Value v = a.Get(i);
    if (!v.IsObject()) throw Napi::TypeError::New(info.Env(), "entries must be an array of { path, mode, pin }");
    Napi::Object o = v.As<Napi::Object>();
    Napi::Value p = o.Get("path");
    if (!p.IsString()) throw Napi::TypeError::New(info.Env(), "entry.path must be a string");
    specs.push_back({p.As<Napi::String>().Utf8Value(), static_cast<mode_t>(ArgUint64(o.Get("mode"), "mode") & 07777), ArgBool(o.Get("pin"), false)});
  }
  return Dispatch<MadeDirs>(
      info, IsSync(info, 1), "imgmount:path.makeDirs",
      [specs](MadeDirs& out, Failure& f) {
        auto unwind = [&out]() {
          for (auto& p : out.pinned)
            if (p.fd >= 0) close(p.fd);
          out.pinned.clear();
          return false;
        };
        for (const auto& s : specs) {
          if (IMGMOUNT_FAULT_OR("mkdir", mkdir(s.path.c_str(), s.mode)) != 0) {
            f.Set("mkdir", s.path);
            return unwind();
          }
          PathInfo info;
          if (s.pin) {
            int fd = IMGMOUNT_FAULT_OR("open", open(s.path.c_str(), O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
            if (fd < 0) {
              f.Set("open", s.path);
              return unwind();
            }
            if (!Describe(fd, info, f, s.path)) return unwind();
          }
          out.pinned.push_back(info);
        }
        return true;
      },
      [](Napi::Env env, MadeDirs& m) -> Napi::Value {
        Napi::Array r = Napi::Array::New(env, m.pinned.size());
        for (uint32_t i = 0; i < m.pinned.size(); i++) r.Set(i, m.pinned[i].fd >= 0 ? PathInfoToJs(env, m.pinned[i]) : env.Null());
        return r;
      });
}

// removeDirs(paths[, sync[, unlinkAfter]]) -> 0 | -errno
// rmdir of each path in order: only empty directories go, and never one a mount sits on (EBUSY).
// Stops at the first failure (ENOENT included), which names that path. unlinkAfter: once every
// rmdir succeeded, this file is unlinked in the same hop (the record of what the directories
// served); the result is 0 or -errno of that unlink (the caller decides).
Napi::Value RemoveDirsJs(const Napi::CallbackInfo& info) {
  if (!info[0].IsArray()) throw Napi::TypeError::New(info.Env(), "paths must be an array of strings");
  Napi::Array a = info[0].As<Napi::Array>();
  std::vector<std::string> paths;
  for (uint32_t i = 0; i < a.Length(); i++) {
    Napi::Value v = a.Get(i);
    if (!v.IsString()) throw Napi::TypeError::New(info.Env(), "paths must be an array of strings");
    paths.push_back(v.As<Napi::String>().Utf8Value());
  }
  std::string unlinkAfter = info.Length() > 2 && info[2].IsString() ? info[2].As<Napi::String>().Utf8Value() : "";
  return Dispatch<int>(
      info, IsSync(info, 1), "imgmount:path.removeDirs",
      [paths, unlinkAfter](int& unlinked, Failure& f) {
        for (const auto& p : paths)
          if (IMGMOUNT_FAULT_OR("rmdir", rmdir(p.c_str())) != 0) return f.Set("rmdir", p);
        unlinked = 0;
        if (!unlinkAfter.empty() && IMGMOUNT_FAULT_OR("unlink", unlink(unlinkAfter.c_str())) != 0) unlinked = -errno;
        return true;
      },
      [](Napi::Env env, int& unlinked) { return Napi::Number::New(env, unlinked); });
}

}  // namespace

bool Describe(int fd, PathInfo& out, Failure& f, const std::string& display) {
  struct statx sx;
  memset(&sx, 0, sizeof sx);
  if (IMGMOUNT_FAULT_OR("statx", statx(fd, "", AT_EMPTY_PATH, STATX_BASIC_STATS | STATX_MNT_ID_UNIQUE | STATX_MNT_ID, &sx)) != 0) {
    f.Set("statx", display);
    close(fd);
    return false;
  }
  out.fd = fd;
  out.dev = (static_cast<uint64_t>(sx.stx_dev_major) << 32) | sx.stx_dev_minor;
  struct stat st;
  if (fstat(fd, &st) == 0) out.dev = st.st_dev;  // glibc's dev_t encoding, as Node's fs.Stats
  out.ino = sx.stx_ino;
  out.mode = sx.stx_mode;
  out.uid = sx.stx_uid;
  out.gid = sx.stx_gid;
  out.mountId = (sx.stx_mask & (STATX_MNT_ID_UNIQUE | STATX_MNT_ID)) ? sx.stx_mnt_id : 0;
  out.mountRoot = (sx.stx_attributes_mask & STATX_ATTR_MOUNT_ROOT) && (sx.stx_attributes & STATX_ATTR_MOUNT_ROOT);
  out.path = KernelName(fd);
  return true;
}

Napi::Value PathInfoToJs(Napi::Env env, PathInfo& p) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("fd", Napi::Number::New(env, p.fd));
  o.Set("dev", BigOrNumber(env, p.dev));
  o.Set("ino", BigOrNumber(env, p.ino));
  o.Set("mode", Napi::Number::New(env, p.mode));
  o.Set("uid", Napi::Number::New(env, p.uid));
  o.Set("gid", Napi::Number::New(env, p.gid));
  o.Set("mountId", BigOrNumber(env, p.mountId));
  o.Set("mountRoot", Napi::Boolean::New(env, p.mountRoot));
  o.Set("path", Napi::String::New(env, p.path));
  return o;
}


void InitPath(Napi::Env env, Napi::Object exports) {
  exports.Set("openAt", Napi::Function::New(env, OpenAtJs, "openAt"));
  exports.Set("walkAt", Napi::Function::New(env, WalkAtJs, "walkAt"));
  exports.Set("openMountRoot", Napi::Function::New(env, OpenMountRootJs, "openMountRoot"));
  exports.Set("umountAt", Napi::Function::New(env, UmountAtJs, "umountAt"));
  exports.Set("makeDirs", Napi::Function::New(env, MakeDirsJs, "makeDirs"));
  exports.Set("removeDirs", Napi::Function::New(env, RemoveDirsJs, "removeDirs"));
}

}  // namespace imgmount
