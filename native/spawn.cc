// Starting a program without forking Node, and learning of its exit without a pool thread.
//
//   spawnProgram({ file, argv, envp, fds, setsid, pipes? }[, sync]) -> { pid, pidfd, pipes }
//     posix_spawn (CLONE_VM|CLONE_VFORK: no copy of Node's page tables, unlike libuv's fork,
//     whose cost grows with the heap and is paid on the JS thread) on a pool thread, then
//     pidfd_open. The child gets fds[i] at fd i (-1: /dev/null, read-only for 0, write-only
//     otherwise) and nothing else open, every signal at its default and none blocked (pool
//     threads block them all), its own session with `setsid`, exactly `envp`. It is a zombie
//     until its ProcessWatcher reaps it, so the pid cannot be reused meanwhile. Each child fd
//     listed in `pipes` gets instead the write end of a fresh pipe, whose read end (close-on-exec)
//     comes back in `pipes`, in the same order; the write ends are closed here. If pidfd_open
//     fails once the program runs, it is killed and reaped (it is not left running unseen), or
//     with `waitUnwatched` waited for and reaped: { pid, pidfd: -1, pipes, exited: { code,
//     signal } } (for a one-shot program, whose outcome only its end tells).
//
//   pidfdProbe([sync]) -> errno of pidfd_open(getpid()): 0 where the two above can be used
//
//   new ProcessWatcher(pidfd, pid, onExit) -> { kill(signal), ref(), unref(), close() }
//     A uv_poll of the pidfd on the event loop's epoll (readable once the process exits), then
//     waitid(P_PID, pid, WNOHANG): our unreaped child's pid cannot name another process until
//     this reaps it. onExit(code, signal) on the JS thread (signal a number, or null). kill() is
//     pidfd_send_signal: never another process that got the pid. The watcher
//     owns the pidfd and closes it once the process is reaped (or the watcher is collected).
//     Keeps the loop alive until the exit unless unref()'d, like a ChildProcess.
//
// Which programs, fds, environment and signals: lib/ decides (lib/ns/native-child.ts).
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <memory>

#include "addon.h"
#include "faults.h"
#include "loop-poll.h"

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#ifndef SYS_pidfd_send_signal
#define SYS_pidfd_send_signal 424
#endif

namespace imgmount {

namespace {

struct SpawnSpec {
  std::string file;
  std::vector<std::string> argv;
  std::vector<std::string> envp;
  std::vector<int> fds;
  std::vector<int> pipes;  // child fds that get a pipe's write end
  bool setsid = false;
  bool waitUnwatched = false;
};

struct Spawned {
  int pid = -1;
  int pidfd = -1;
  std::vector<int> pipes;  // the read ends, as SpawnSpec::pipes
  int status = -1;         // without a pidfd (waitUnwatched): its wait status
};

// The pipes a spawn makes: read ends for the caller, write ends closed once the child has them.
struct Pipes {
  std::vector<int> read, write;
  ~Pipes() {
    for (int fd : read)
      if (fd >= 0) close(fd);
    for (int fd : write)
      if (fd >= 0) close(fd);
  }
};

std::vector<std::string> StringArray(Napi::Value v, const char* name) {
  if (!v.IsArray()) throw Napi::TypeError::New(v.Env(), std::string(name) + " must be an array of strings");
  Napi::Array a = v.As<Napi::Array>();
  std::vector<std::string> out;
  for (uint32_t i = 0; i < a.Length(); i++) {
    Napi::Value e = a.Get(i);
    if (!e.IsString()) throw Napi::TypeError::New(v.Env(), std::string(name) + " must be an array of strings");
    std::string s = e.As<Napi::String>().Utf8Value();
    if (s.find('\0') != std::string::npos) throw Napi::TypeError::New(v.Env(), std::string(name) + " must not hold NUL bytes");
    out.push_back(std::move(s));
  }
  return out;
}

// The spawn itself (pool thread). Sources are first duplicated above every target fd, so that
// dup2 in the child never overwrites a source it still needs.
bool Spawn(const SpawnSpec& spec, Spawned& out, Failure& f) {
  SpawnSpec s = spec;
  Pipes pipes;
  for (int c : s.pipes) {
    int p[2];
    if (IMGMOUNT_FAULT_OR("pipe2", pipe2(p, O_CLOEXEC)) != 0) return f.Set("pipe2", s.file);
    pipes.read.push_back(p[0]);
    pipes.write.push_back(p[1]);
    s.fds[static_cast<size_t>(c)] = p[1];
  }
  const int n = static_cast<int>(s.fds.size());
  std::vector<int> high(s.fds.size(), -1);
  auto closeHigh = [&] {
    for (int fd : high)
      if (fd >= 0) close(fd);
  };
  for (int i = 0; i < n; i++) {
    if (s.fds[static_cast<size_t>(i)] < 0) continue;
    high[static_cast<size_t>(i)] = fcntl(s.fds[static_cast<size_t>(i)], F_DUPFD_CLOEXEC, n);
    if (high[static_cast<size_t>(i)] < 0) {
      f.Set("fcntl(F_DUPFD_CLOEXEC)", s.file);
      closeHigh();
      return false;
    }
  }
  posix_spawn_file_actions_t fa;
  posix_spawnattr_t attr;
  posix_spawn_file_actions_init(&fa);
  posix_spawnattr_init(&attr);
  for (int i = 0; i < n; i++) {
    int src = high[static_cast<size_t>(i)];
    if (src >= 0) posix_spawn_file_actions_adddup2(&fa, src, i);
    else posix_spawn_file_actions_addopen(&fa, i, "/dev/null", i == 0 ? O_RDONLY : O_WRONLY, 0);
  }
  posix_spawn_file_actions_addclosefrom_np(&fa, n);
  sigset_t none, all;
  sigemptyset(&none);
  sigfillset(&all);
  short flags = POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF | (s.setsid ? POSIX_SPAWN_SETSID : 0);
  posix_spawnattr_setflags(&attr, flags);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setsigdefault(&attr, &all);
  std::vector<char*> argv, envp;
  for (const auto& a : s.argv) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  for (const auto& e : s.envp) envp.push_back(const_cast<char*>(e.c_str()));
  envp.push_back(nullptr);
  pid_t pid = -1;
  int rc = imgmount_fault("posix_spawn") != 0 ? errno : posix_spawn(&pid, s.file.c_str(), &fa, &attr, argv.data(), envp.data());
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&attr);
  closeHigh();
  if (rc != 0) return f.Set("posix_spawn", s.file, "", rc);
  int pidfd = IMGMOUNT_FAULT_OR("pidfd_open", static_cast<int>(syscall(SYS_pidfd_open, pid, 0)));
  if (pidfd < 0) {
    // Without a pidfd it cannot be watched: it is not left running unseen.
    int err = errno;
    if (s.waitUnwatched) {
      // Its output waits in the pipes (a one-shot program writes a few lines, well under a
      // pipe's 64 KiB, so it never blocks on them while we wait).
      for (int& fd : pipes.write) {
        close(fd);
        fd = -1;
      }
      int status = 0;
      while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
      }
      out.pid = pid;
      out.status = status;
      out.pipes.swap(pipes.read);
      return true;
    }
    kill(pid, SIGKILL);
    waitpid(pid, nullptr, 0);
    return f.Set("pidfd_open", s.file, "", err);
  }
  out.pid = pid;
  out.pidfd = pidfd;
  out.pipes.swap(pipes.read);
  return true;
}

Napi::Value SpawnProgramJs(const Napi::CallbackInfo& info) {
  Napi::Object o = ArgObject(info, 0, "spec");
  SpawnSpec s;
  s.file = ArgStringValue(o.Get("file"), "file");
  if (s.file.empty() || s.file[0] != '/') throw Napi::TypeError::New(info.Env(), "file must be an absolute path");
  s.argv = StringArray(o.Get("argv"), "argv");
  if (s.argv.empty()) throw Napi::TypeError::New(info.Env(), "argv must hold at least the program's name");
  s.envp = StringArray(o.Get("envp"), "envp");
  Napi::Value fds = o.Get("fds");
  if (!fds.IsArray()) throw Napi::TypeError::New(info.Env(), "fds must be an array of numbers");
  for (uint32_t i = 0; i < fds.As<Napi::Array>().Length(); i++) {
    Napi::Value e = fds.As<Napi::Array>().Get(i);
    if (!e.IsNumber()) throw Napi::TypeError::New(info.Env(), "fds must be an array of numbers");
    s.fds.push_back(e.As<Napi::Number>().Int32Value());
  }
  if (s.fds.size() < 3) throw Napi::TypeError::New(info.Env(), "fds must name at least stdin, stdout and stderr");
  s.setsid = ArgBoolean(o.Get("setsid"), "setsid");
  s.waitUnwatched = ArgBool(o.Get("waitUnwatched"), false);
  Napi::Value pipes = o.Get("pipes");
  if (!pipes.IsUndefined()) {
    if (!pipes.IsArray()) throw Napi::TypeError::New(info.Env(), "pipes must be an array of child fd numbers");
    for (uint32_t i = 0; i < pipes.As<Napi::Array>().Length(); i++) {
      Napi::Value e = pipes.As<Napi::Array>().Get(i);
      int c = e.IsNumber() ? e.As<Napi::Number>().Int32Value() : -1;
      if (c < 0 || static_cast<size_t>(c) >= s.fds.size() || s.fds[static_cast<size_t>(c)] != -1)
        throw Napi::TypeError::New(info.Env(), "pipes must name child fds whose fds entry is -1");
      for (int seen : s.pipes)
        if (seen == c) throw Napi::TypeError::New(info.Env(), "pipes must not name a child fd twice");
      s.pipes.push_back(c);
    }
  }
  return Dispatch<Spawned>(
      info, ArgBool(info[1], false), "imgmount:spawn.program",
      [s](Spawned& out, Failure& f) { return Spawn(s, out, f); },
      [](Napi::Env env, Spawned& r) -> Napi::Value {
        Napi::Object res = Napi::Object::New(env);
        res.Set("pid", Napi::Number::New(env, r.pid));
        res.Set("pidfd", Napi::Number::New(env, r.pidfd));
        Napi::Array pipes = Napi::Array::New(env, r.pipes.size());
        for (uint32_t i = 0; i < r.pipes.size(); i++) pipes.Set(i, Napi::Number::New(env, r.pipes[i]));
        res.Set("pipes", pipes);
        if (r.pidfd < 0) {
          Napi::Object exited = Napi::Object::New(env);
          exited.Set("code", WIFEXITED(r.status) ? Napi::Value(Napi::Number::New(env, WEXITSTATUS(r.status))) : env.Null());
          exited.Set("signal", WIFSIGNALED(r.status) ? Napi::Value(Napi::Number::New(env, WTERMSIG(r.status))) : env.Null());
          res.Set("exited", exited);
        }
        return res;
      });
}

class ProcessWatcher : public LoopWatcher<ProcessWatcher> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "ProcessWatcher",
                       {InstanceMethod<&ProcessWatcher::Kill>("kill"), InstanceMethod<&ProcessWatcher::RefJs>("ref"),
                        InstanceMethod<&ProcessWatcher::UnrefJs>("unref"), InstanceMethod<&ProcessWatcher::Close>("close")});
  }

  explicit ProcessWatcher(const Napi::CallbackInfo& info) : LoopWatcher<ProcessWatcher>(info) {
    Napi::Env env = info.Env();
    pidfd_ = ArgInt(info, 0, "pidfd");
    pid_ = ArgInt(info, 1, "pid");
    if (!info[2].IsFunction()) throw Napi::TypeError::New(env, "onExit must be a function");
    Watch(env, pidfd_, UV_READABLE, OnPoll, info[2].As<Napi::Function>(), "imgmount:spawn.watch", "uv_poll_start(pidfd)");
  }

  ~ProcessWatcher() override { ClosePidfd(); }

 private:
  // kill(signal) -> true if sent, false once it has exited (or was reaped); errors throw.
  Napi::Value Kill(const Napi::CallbackInfo& info) {
    int sig = ArgInt(info, 0, "signal");
    if (exited_) return Napi::Boolean::New(info.Env(), false);
    if (syscall(SYS_pidfd_send_signal, pidfd_, sig, nullptr, 0) == 0) return Napi::Boolean::New(info.Env(), true);
    if (errno == ESRCH) return Napi::Boolean::New(info.Env(), false);
    Failure f;
    f.Set("pidfd_send_signal");
    throw Napi::Error(info.Env(), MakeSystemError(info.Env(), f));
  }

  Napi::Value RefJs(const Napi::CallbackInfo& info) {
    poll_.KeepAlive(true);
    return info.Env().Undefined();
  }

  Napi::Value UnrefJs(const Napi::CallbackInfo& info) {
    poll_.KeepAlive(false);
    return info.Env().Undefined();
  }

  Napi::Value Close(const Napi::CallbackInfo& info) {
    StopWatching();
    return info.Env().Undefined();
  }

  void ClosePidfd() {
    if (pidfd_ >= 0) close(pidfd_);
    pidfd_ = -1;
  }

  static void OnPoll(uv_poll_t* h, int, int) {
    auto* self = static_cast<ProcessWatcher*>(h->data);
    if (self == nullptr || !self->Watching() || self->exited_) return;
    // Readable once it exited: reap it. WNOHANG: a wake-up before the exit finds no status (si_pid
    // 0) and waits for the next. ECHILD: something else in this process reaped it (a
    // waitpid(-1)): it is gone, its status unknown.
    siginfo_t si;
    memset(&si, 0, sizeof si);
    int rc = waitid(P_PID, static_cast<id_t>(self->pid_), &si, WEXITED | WNOHANG);
    if (rc == 0 && si.si_pid == 0) return;
    if (rc != 0 && errno != ECHILD) return;
    self->exited_ = true;
    self->poll_.Stop();
    self->ClosePidfd();
    Napi::Env env = self->Env();
    Napi::HandleScope scope(env);
    Napi::Value code = env.Null(), sig = env.Null();
    if (rc == 0 && si.si_code == CLD_EXITED) code = Napi::Number::New(env, si.si_status);
    else if (rc == 0 && (si.si_code == CLD_KILLED || si.si_code == CLD_DUMPED)) sig = Napi::Number::New(env, si.si_status);
    // Held across the callback (which may close() the watcher, its last reference).
    self->Ref();
    self->Deliver(env, {code, sig});
    self->StopWatching();
    self->Unref();
  }

  int pidfd_ = -1;
  int pid_ = -1;
  bool exited_ = false;
};

// pidfdProbe([sync]) -> errno of pidfd_open on this process (0: pidfds work here; ENOSYS before
// Linux 5.3, EPERM/ENOSYS under a seccomp filter). Asked before any spawn: a program started and
// then killed for want of a pidfd may already have taken requests of a FUSE mount it was given.
Napi::Value PidfdProbeJs(const Napi::CallbackInfo& info) {
  return Dispatch<int>(
      info, ArgBool(info[0], false), "imgmount:spawn.probe",
      [](int& err, Failure&) {
        int fd = static_cast<int>(syscall(SYS_pidfd_open, getpid(), 0));
        err = fd < 0 ? errno : 0;
        if (fd >= 0) close(fd);
        return true;
      },
      [](Napi::Env env, int& err) { return Napi::Number::New(env, err); });
}

}  // namespace

void InitSpawn(Napi::Env env, Napi::Object exports) {
  exports.Set("pidfdProbe", Napi::Function::New(env, PidfdProbeJs, "pidfdProbe"));
  exports.Set("spawnProgram", Napi::Function::New(env, SpawnProgramJs, "spawnProgram"));
  exports.Set("ProcessWatcher", ProcessWatcher::Define(env));
}

}  // namespace imgmount
