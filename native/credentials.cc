// openAs(): open a path with another user's credentials, for a root daemon acting for that
// user (the confused deputy, security model class 8).
//
// Node is multi-threaded and credentials are per task, so they must never change on a Node
// thread. Design: from the calling thread (a thread of the addon's pool, or the main thread for the
// sync twin) we block every signal, then clone(CLONE_VM | CLONE_VFORK | CLONE_FILES) a child
// task with exit signal 0 on a small private stack. The calling thread is suspended until the
// child exits (CLONE_VFORK), the child's fd lands in our own fd table (CLONE_FILES), and the
// result comes back through shared memory (CLONE_VM): one pool hop, no fd passing, no exec.
// Chosen over fork + SCM_RIGHTS because it costs no page-table copy of a large Node heap
// and needs no socket protocol; the price is that the child shares our memory, so:
//  - it makes raw syscalls only (syscall(SYS_...)); never glibc's setresuid & co., whose
//    "setxid broadcast" walks glibc's thread list in the shared memory and would change the
//    credentials of every Node thread. glibc's syscall() stores errno in the suspended
//    parent thread's TLS, which is harmless while it is suspended.
//  - it changes only the *effective* (and so filesystem) ids and the supplementary groups:
//    setresuid(-1, uid, -1). The kernel checks opens with fsuid/fsgid/groups and, with a
//    nonzero euid, with no effective capabilities at all; but the real and saved ids stay
//    root, so the user cannot signal (SIGSTOP would hang our pool thread) or ptrace (the
//    child shares a root process's memory) the task while it runs.
//  - changing the euid makes the kernel reset the *shared* mm's dumpable flag to
//    fs.suid_dumpable (commit_creds); we put it back afterwards.
//  - all signals are blocked before clone, so no handler of ours ever runs on the child's
//    stack (the child inherits the mask).
//
// Order in the child: setgroups, setresgid, setresuid; statx the path (following symlinks
// with the user's rights); FIFOs, sockets and character devices are never opened (a distinct
// result, not an errno); openat(flags | O_CLOEXEC | O_NONBLOCK | O_NOCTTY) - a directory is
// opened O_RDONLY | O_DIRECTORY and, if write access was asked, checked with
// faccessat2(W_OK, AT_EACCESS) as the user; statx of the fd must show the same device and
// inode as the first statx. What kind of file may be used (block devices, directories) is
// lib/'s decision: this file only reports.
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#include <climits>
#include <mutex>

#include "addon.h"

#ifndef __NR_faccessat2
#define __NR_faccessat2 439
#endif
#ifndef AT_EACCESS
#define AT_EACCESS 0x200
#endif

// 32-bit ids: the legacy 16-bit calls keep the plain names on some 32-bit architectures.
#ifdef SYS_setgroups32
#define IMGMOUNT_SYS_SETGROUPS SYS_setgroups32
#define IMGMOUNT_SYS_SETRESGID SYS_setresgid32
#define IMGMOUNT_SYS_SETRESUID SYS_setresuid32
#else
#define IMGMOUNT_SYS_SETGROUPS SYS_setgroups
#define IMGMOUNT_SYS_SETRESGID SYS_setresgid
#define IMGMOUNT_SYS_SETRESUID SYS_setresuid
#endif

namespace imgmount {

namespace {

enum Step : int { kSetgroups, kSetresgid, kSetresuid, kStat, kOpen, kFstat, kAccess, kStepCount };
const char* const kStepNames[kStepCount] = {"setgroups", "setresgid", "setresuid", "statx",
                                            "open",      "statx",     "faccessat2"};

enum Refusal : int { kNone = 0, kFileType, kChanged };

// Everything the child reads and writes; it lives on the parent's stack.
struct Shared {
  // in
  const char* path;
  int flags;
  uid_t uid;
  gid_t gid;
  const gid_t* groups;
  size_t ngroups;
  // out
  int step;
  int err;
  int refused;
  int fd;
  bool done;
  struct statx before;
  struct statx after;
};

long StatxPath(const char* path, struct statx* out) {
  return syscall(SYS_statx, AT_FDCWD, path, AT_STATX_SYNC_AS_STAT, STATX_BASIC_STATS, out);
}

long StatxFd(int fd, struct statx* out) {
  return syscall(SYS_statx, fd, "", AT_EMPTY_PATH | AT_STATX_SYNC_AS_STAT, STATX_BASIC_STATS, out);
}

// The child: raw syscalls and plain memory accesses only.
int Child(void* arg) {
  Shared* s = static_cast<Shared*>(arg);
#define IMGMOUNT_FAIL()   \
  do {                    \
    s->err = errno;       \
    syscall(SYS_exit, 0); \
  } while (0)
  s->step = kSetgroups;
  if (syscall(IMGMOUNT_SYS_SETGROUPS, s->ngroups, s->groups) != 0) IMGMOUNT_FAIL();
  s->step = kSetresgid;
  if (syscall(IMGMOUNT_SYS_SETRESGID, static_cast<gid_t>(-1), s->gid, static_cast<gid_t>(-1)) != 0) IMGMOUNT_FAIL();
  s->step = kSetresuid;
  if (syscall(IMGMOUNT_SYS_SETRESUID, static_cast<uid_t>(-1), s->uid, static_cast<uid_t>(-1)) != 0) IMGMOUNT_FAIL();

  s->step = kStat;
  if (StatxPath(s->path, &s->before) != 0) IMGMOUNT_FAIL();
  mode_t type = s->before.stx_mode & S_IFMT;
  if (type == S_IFIFO || type == S_IFSOCK || type == S_IFCHR) {
    s->refused = kFileType;
    s->done = true;
    syscall(SYS_exit, 0);
  }
  bool dir = type == S_IFDIR;
  int accmode = s->flags & O_ACCMODE;
  int flags = dir ? (s->flags & ~O_ACCMODE) | O_RDONLY | O_DIRECTORY : s->flags;
  s->step = kOpen;
  long fd = syscall(SYS_openat, AT_FDCWD, s->path, flags | O_CLOEXEC | O_NONBLOCK | O_NOCTTY, 0);
  if (fd < 0) IMGMOUNT_FAIL();
  s->fd = static_cast<int>(fd);  // from here on the parent closes it if we do not finish
  s->step = kFstat;
  if (StatxFd(s->fd, &s->after) != 0) IMGMOUNT_FAIL();
  if (s->after.stx_dev_major != s->before.stx_dev_major || s->after.stx_dev_minor != s->before.stx_dev_minor ||
      s->after.stx_ino != s->before.stx_ino) {
    s->refused = kChanged;
    s->done = true;
    syscall(SYS_exit, 0);
  }
  if (dir && accmode != O_RDONLY) {
    s->step = kAccess;
    if (syscall(__NR_faccessat2, s->fd, "", W_OK, AT_EACCESS | AT_EMPTY_PATH) != 0) IMGMOUNT_FAIL();
  }
  s->done = true;
  syscall(SYS_exit, 0);
#undef IMGMOUNT_FAIL
  return 0;
}

// The mm's dumpable flag, put back once the last concurrent openAs is done with it.
std::mutex dumpableMutex;
int dumpableUsers = 0;
int dumpableBefore = 1;

void EnterCredentialChange() {
  std::lock_guard<std::mutex> lock(dumpableMutex);
  if (dumpableUsers++ == 0) dumpableBefore = prctl(PR_GET_DUMPABLE, 0, 0, 0, 0);
}

void LeaveCredentialChange() {
  std::lock_guard<std::mutex> lock(dumpableMutex);
  if (--dumpableUsers == 0 && dumpableBefore == 1 && prctl(PR_GET_DUMPABLE, 0, 0, 0, 0) != 1)
    prctl(PR_SET_DUMPABLE, 1, 0, 0, 0);
}

constexpr size_t kStackSize = 64 * 1024;

struct OpenAsArgs {
  std::string path;
  int flags = 0;
  uid_t uid = 0;
  gid_t gid = 0;
  std::vector<gid_t> groups;
};

struct OpenAsResult {
  int fd = -1;
  int refused = kNone;
  struct statx st {};
};

bool OpenAsWork(const OpenAsArgs& a, OpenAsResult& out, Failure& f) {
  Shared s{};
  s.path = a.path.c_str();
  s.flags = a.flags;
  s.uid = a.uid;
  s.gid = a.gid;
  s.groups = a.groups.data();
  s.ngroups = a.groups.size();
  s.step = kSetgroups;
  s.fd = -1;

  void* mem = mmap(nullptr, kStackSize, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
  if (mem == MAP_FAILED) return f.Set("mmap", a.path);
  // A guard page at the bottom: an overflow faults instead of writing into other memory.
  mprotect(mem, static_cast<size_t>(sysconf(_SC_PAGESIZE)), PROT_NONE);

  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  EnterCredentialChange();
  pid_t pid = clone(Child, static_cast<char*>(mem) + kStackSize, CLONE_VM | CLONE_VFORK | CLONE_FILES, &s);
  int cloneErr = errno;
  int status = 0;
  if (pid > 0) {
    while (waitpid(pid, &status, __WCLONE) < 0 && errno == EINTR) {
    }
  }
  LeaveCredentialChange();
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  munmap(mem, kStackSize);

  if (pid < 0) return f.Set("clone", a.path, "", cloneErr);
  if (!s.done || s.refused == kChanged) {
    if (s.fd >= 0) close(s.fd);
    s.fd = -1;
  }
  if (!s.done) {
    // A failed step, or the child was killed (by root: the user may not signal it).
    int e = s.err != 0 ? s.err : (WIFSIGNALED(status) ? EINTR : EIO);
    return f.Set(kStepNames[s.step], a.path, "", e);
  }
  out.fd = s.fd;
  out.refused = s.refused;
  out.st = s.refused == kNone ? s.after : s.before;
  return true;
}

Napi::Value StatToJs(Napi::Env env, const OpenAsResult& r) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("fd", Napi::Number::New(env, r.fd));
  if (r.refused == kFileType) o.Set("refused", Napi::String::New(env, "file-type"));
  if (r.refused == kChanged) o.Set("refused", Napi::String::New(env, "changed"));
  o.Set("dev", BigOrNumber(env, makedev(r.st.stx_dev_major, r.st.stx_dev_minor)));
  o.Set("ino", BigOrNumber(env, r.st.stx_ino));
  o.Set("mode", Napi::Number::New(env, r.st.stx_mode));
  o.Set("size", BigOrNumber(env, r.st.stx_size));
  o.Set("rdev", BigOrNumber(env, makedev(r.st.stx_rdev_major, r.st.stx_rdev_minor)));
  o.Set("uid", Napi::Number::New(env, r.st.stx_uid));
  o.Set("gid", Napi::Number::New(env, r.st.stx_gid));
  return o;
}

// openAs(path, flags, { uid, gid, groups }[, sync]) ->
//   { fd, dev, ino, mode, size, rdev, uid, gid }               opened (fstat of the fd)
//   { fd: -1, refused: 'file-type', dev, ino, mode, ... }      a FIFO, socket or char device: not opened
//   { fd: -1, refused: 'changed', ... }                        the path changed between stat and open
Napi::Value OpenAs(const Napi::CallbackInfo& info) {
  OpenAsArgs a;
  a.path = ArgString(info, 0, "path");
  if (a.path.find('\0') != std::string::npos) throw Napi::TypeError::New(info.Env(), "path must not contain NUL");
  a.flags = ArgInt(info, 1, "flags");
  Napi::Object cred = ArgObject(info, 2, "credentials");
  a.uid = ArgId(cred.Get("uid"), "credentials.uid");
  a.gid = ArgId(cred.Get("gid"), "credentials.gid");
  Napi::Value groups = cred.Get("groups");
  if (!groups.IsArray()) throw Napi::TypeError::New(info.Env(), "credentials.groups must be an array of numbers");
  Napi::Array arr = groups.As<Napi::Array>();
  if (arr.Length() > 65536) throw Napi::RangeError::New(info.Env(), "credentials.groups has more than NGROUPS_MAX entries");
  for (uint32_t i = 0; i < arr.Length(); i++) a.groups.push_back(ArgId(arr.Get(i), "credentials.groups[]"));
  return Dispatch<OpenAsResult>(
      info, ArgBool(info[3], false), "imgmount:credentials.openAs",
      [a](OpenAsResult& out, Failure& f) { return OpenAsWork(a, out, f); },
      [](Napi::Env env, OpenAsResult& r) { return StatToJs(env, r); });
}

}  // namespace

void InitCredentials(Napi::Env env, Napi::Object exports) {
  exports.Set("openAs", Napi::Function::New(env, OpenAs, "openAs"));
}

}  // namespace imgmount
