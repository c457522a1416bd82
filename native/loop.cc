// Loop devices: LOOP_CTL_GET_FREE, LOOP_CONFIGURE, the legacy LOOP_SET_FD + LOOP_SET_STATUS64
// pair, LOOP_GET_STATUS64 and LOOP_CLR_FD. Translation only: which method, how many retries
// and what counts as a match are decided in lib/loop/, and every argument is required (the
// defaults are lib/loop/context.ts's).
#include "loop.h"

#include "faults.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>

namespace imgmount {

std::string LoopPath(int number) { return "/dev/loop" + std::to_string(number); }

static bool LoopAttachFd(const LoopAttachSpec& spec, int imageFd, LoopAttached& out, Failure& f);

// The binding ioctl, or the errno a test injected in its place (see LoopAttachSpec).
static int BindIoctl(const LoopAttachSpec& spec, int fd, unsigned long request, unsigned long arg) {
  if (spec.injectErrno != 0) {
    errno = spec.injectErrno;
    return -1;
  }
  return ioctl(fd, request, arg);
}

bool LoopAttach(const LoopAttachSpec& spec, LoopAttached& out, Failure& f) {
  if (spec.imageFd >= 0) return LoopAttachFd(spec, spec.imageFd, out, f);
  int img = IMGMOUNT_FAULT_OR("open(backing file)", open(spec.imagePath.c_str(), (spec.openReadOnly ? O_RDONLY : O_RDWR) | O_CLOEXEC));
  if (img < 0) return f.Set("open", spec.imagePath);
  bool ok = LoopAttachFd(spec, img, out, f);
  close(img);  // the loop device holds its own reference to the file
  return ok;
}

static bool LoopAttachFd(const LoopAttachSpec& spec, int imageFd, LoopAttached& out, Failure& f) {
  struct stat st;
  if (IMGMOUNT_FAULT_OR("fstat(backing file)", fstat(imageFd, &st)) != 0) return f.Set("fstat", spec.imagePath);
  out.imageDevice = st.st_dev;
  out.imageInode = st.st_ino;
  int number = spec.device;
  if (number < 0) {
    int ctl = IMGMOUNT_FAULT_OR("open(/dev/loop-control)", open("/dev/loop-control", O_RDWR | O_CLOEXEC));
    if (ctl < 0) return f.Set("open", "/dev/loop-control");
    number = IMGMOUNT_FAULT_OR("ioctl(LOOP_CTL_GET_FREE)", ioctl(ctl, LOOP_CTL_GET_FREE));
    int e = errno;
    close(ctl);
    if (number < 0) return f.Set("ioctl(LOOP_CTL_GET_FREE)", "/dev/loop-control", "", e);
  }
  std::string path = LoopPath(number);
  int fd = IMGMOUNT_FAULT_OR("open(/dev/loopN)", open(path.c_str(), (spec.openReadOnly ? O_RDONLY : O_RDWR) | O_CLOEXEC));
  if (fd < 0) return f.Set("open", path);

  if (!spec.legacy) {
    struct loop_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.fd = static_cast<__u32>(imageFd);
    cfg.block_size = spec.blockSize;
    cfg.info = spec.info;
    if (IMGMOUNT_FAULT_OR("ioctl(LOOP_CONFIGURE)", BindIoctl(spec, fd, LOOP_CONFIGURE, reinterpret_cast<unsigned long>(&cfg))) != 0) {
      f.Set("ioctl(LOOP_CONFIGURE)", path);
      close(fd);  // not bound by us: nothing else to undo
      return false;
    }
    if (IMGMOUNT_FAULT_OR("ioctl(LOOP_GET_STATUS64)", ioctl(fd, LOOP_GET_STATUS64, &out.status)) != 0) {
      f.Set("ioctl(LOOP_GET_STATUS64)", path);
      (void)IMGMOUNT_FAULT_OR("ioctl(LOOP_CLR_FD)", ioctl(fd, LOOP_CLR_FD, 0));
      close(fd);
      return false;
    }
    out.haveStatus = true;
  } else {
    if (IMGMOUNT_FAULT_OR("ioctl(LOOP_SET_FD)", BindIoctl(spec, fd, LOOP_SET_FD, static_cast<unsigned long>(imageFd))) != 0) {
      f.Set("ioctl(LOOP_SET_FD)", path);
      close(fd);
      return false;
    }
    if (spec.blockSize != 0 &&
        IMGMOUNT_FAULT_OR("ioctl(LOOP_SET_BLOCK_SIZE)", ioctl(fd, LOOP_SET_BLOCK_SIZE, static_cast<unsigned long>(spec.blockSize))) != 0) {
      f.Set("ioctl(LOOP_SET_BLOCK_SIZE)", path);
      (void)IMGMOUNT_FAULT_OR("ioctl(LOOP_CLR_FD)", ioctl(fd, LOOP_CLR_FD, 0));
      close(fd);
      return false;
    }
  }
  out.fd = fd;
  out.number = number;
  out.path = path;
  return true;
}

bool LoopDetach(int fd, bool clear, const std::string& path, Failure& f) {
  bool ok = true;
  if (clear && IMGMOUNT_FAULT_OR("ioctl(LOOP_CLR_FD)", ioctl(fd, LOOP_CLR_FD, 0)) != 0) ok = f.Set("ioctl(LOOP_CLR_FD)", path);
  if (close(fd) != 0 && ok && errno != EINTR) ok = f.Set("close", path);
  return ok;
}

// offset, sizeLimit, flags and fileName of a loop_info64, all required.
static void ParseInfo(Napi::Object o, struct loop_info64& info) {
  memset(&info, 0, sizeof info);
  info.lo_offset = ArgUint64(o.Get("offset"), "offset");
  info.lo_sizelimit = ArgUint64(o.Get("sizeLimit"), "sizeLimit");
  info.lo_flags = static_cast<__u32>(ArgUint64(o.Get("flags"), "flags"));
  std::string name = ArgStringValue(o.Get("fileName"), "fileName");
  // lo_file_name is a NUL-terminated 64-byte field; the kernel shows it in sysfs/losetup.
  size_t n = name.size() < LO_NAME_SIZE - 1 ? name.size() : LO_NAME_SIZE - 1;
  memcpy(info.lo_file_name, name.data(), n);
}

// An fd or device number, or -1 for "none".
static int ArgNumberOrNone(const Napi::Value& v, const char* name) {
  int64_t n = ArgInt64(v, name);
  if (n < -1 || n > INT32_MAX) throw Napi::RangeError::New(v.Env(), std::string(name) + " must be -1 or an integer from 0 to 2^31 - 1");
  return static_cast<int>(n);
}

LoopAttachSpec ParseLoopAttachSpec(Napi::Object o) {
  LoopAttachSpec s;
  Napi::Env env = o.Env();
  s.imageFd = ArgNumberOrNone(o.Get("imageFd"), "imageFd");
  s.imagePath = ArgStringValue(o.Get("imagePath"), "imagePath");
  if (s.imageFd < 0 && s.imagePath.empty()) throw Napi::TypeError::New(env, "imagePath must name the backing file when imageFd is -1");
  s.device = ArgNumberOrNone(o.Get("device"), "device");
  s.openReadOnly = ArgBoolean(o.Get("openReadOnly"), "openReadOnly");
  std::string m = ArgStringValue(o.Get("method"), "method");
  if (m == "legacy") s.legacy = true;
  else if (m != "configure") throw Napi::TypeError::New(env, "method must be 'configure' or 'legacy'");
  s.blockSize = static_cast<uint32_t>(ArgUint64(o.Get("blockSize"), "blockSize"));
  ParseInfo(o, s.info);
  s.injectErrno = static_cast<int>(ArgUint64(o.Get("injectErrno"), "injectErrno"));
  return s;
}

Napi::Value LoopInfoToJs(Napi::Env env, const struct loop_info64& s) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("device", BigOrNumber(env, s.lo_device));
  o.Set("inode", BigOrNumber(env, s.lo_inode));
  o.Set("rdevice", BigOrNumber(env, s.lo_rdevice));
  o.Set("offset", BigOrNumber(env, s.lo_offset));
  o.Set("sizeLimit", BigOrNumber(env, s.lo_sizelimit));
  o.Set("number", Napi::Number::New(env, s.lo_number));
  o.Set("flags", Napi::Number::New(env, s.lo_flags));
  size_t n = strnlen(reinterpret_cast<const char*>(s.lo_file_name), LO_NAME_SIZE);
  o.Set("fileName", Napi::String::New(env, reinterpret_cast<const char*>(s.lo_file_name), n));
  return o;
}

Napi::Object LoopAttachedToJs(Napi::Env env, const LoopAttached& a) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("imageDevice", BigOrNumber(env, a.imageDevice));
  o.Set("imageInode", BigOrNumber(env, a.imageInode));
  o.Set("fd", Napi::Number::New(env, a.fd));
  o.Set("number", Napi::Number::New(env, a.number));
  o.Set("path", Napi::String::New(env, a.path));
  o.Set("status", a.haveStatus ? LoopInfoToJs(env, a.status) : env.Null());
  return o;
}

namespace {

bool IsSync(const Napi::CallbackInfo& info, size_t i) { return ArgBool(info[i], false); }

// loopCtlGetFree([sync]) -> number
Napi::Value LoopCtlGetFree(const Napi::CallbackInfo& info) {
  return Dispatch<int>(
      info, IsSync(info, 0), "imgmount:loop.getFree",
      [](int& out, Failure& f) {
        int ctl = IMGMOUNT_FAULT_OR("open(/dev/loop-control)", open("/dev/loop-control", O_RDWR | O_CLOEXEC));
        if (ctl < 0) return f.Set("open", "/dev/loop-control");
        out = IMGMOUNT_FAULT_OR("ioctl(LOOP_CTL_GET_FREE)", ioctl(ctl, LOOP_CTL_GET_FREE));
        int e = errno;
        close(ctl);
        if (out < 0) return f.Set("ioctl(LOOP_CTL_GET_FREE)", "/dev/loop-control", "", e);
        return true;
      },
      [](Napi::Env env, int& n) { return Napi::Number::New(env, n); });
}

// loopAttach(spec[, sync]) -> { fd, number, path, status | null }
Napi::Value LoopAttachJs(const Napi::CallbackInfo& info) {
  LoopAttachSpec spec = ParseLoopAttachSpec(ArgObject(info, 0, "spec"));
  return Dispatch<LoopAttached>(
      info, IsSync(info, 1), "imgmount:loop.attach",
      [spec](LoopAttached& out, Failure& f) { return LoopAttach(spec, out, f); },
      [](Napi::Env env, LoopAttached& a) -> Napi::Value { return LoopAttachedToJs(env, a); });
}

// loopSetStatus(fd, info, path[, sync]) -> void     (LOOP_SET_STATUS64)
Napi::Value LoopSetStatus(const Napi::CallbackInfo& info) {
  int fd = ArgInt(info, 0, "fd");
  struct loop_info64 li;
  ParseInfo(ArgObject(info, 1, "info"), li);
  std::string path = ArgString(info, 2, "path");
  return Dispatch<int>(
      info, IsSync(info, 3), "imgmount:loop.setStatus",
      [fd, li, path](int&, Failure& f) {
        if (IMGMOUNT_FAULT_OR("ioctl(LOOP_SET_STATUS64)", ioctl(fd, LOOP_SET_STATUS64, &li)) != 0)
          return f.Set("ioctl(LOOP_SET_STATUS64)", path);
        return true;
      },
      [](Napi::Env env, int&) { return env.Undefined(); });
}

// loopGetStatus(fd | path[, sync]) -> status       (LOOP_GET_STATUS64)
Napi::Value LoopGetStatus(const Napi::CallbackInfo& info) {
  int fd = -1;
  std::string path;
  if (info[0].IsNumber()) fd = info[0].As<Napi::Number>().Int32Value();
  else path = ArgString(info, 0, "device");
  return Dispatch<struct loop_info64>(
      info, IsSync(info, 1), "imgmount:loop.getStatus",
      [fd, path](struct loop_info64& out, Failure& f) {
        int use = fd;
        if (use < 0) {
          use = IMGMOUNT_FAULT_OR("open(/dev/loopN)", open(path.c_str(), O_RDONLY | O_CLOEXEC));
          if (use < 0) return f.Set("open", path);
        }
        int rc = IMGMOUNT_FAULT_OR("ioctl(LOOP_GET_STATUS64)", ioctl(use, LOOP_GET_STATUS64, &out));
        int e = errno;
        if (fd < 0) close(use);
        if (rc != 0) return f.Set("ioctl(LOOP_GET_STATUS64)", path, "", e);
        return true;
      },
      [](Napi::Env env, struct loop_info64& s) { return LoopInfoToJs(env, s); });
}

// loopOpen(path, readOnly[, sync]) -> { fd, status }: open + LOOP_GET_STATUS64 (closes on failure).
struct Opened {
  int fd = -1;
  struct loop_info64 status {};
};
Napi::Value LoopOpen(const Napi::CallbackInfo& info) {
  std::string path = ArgString(info, 0, "path");
  bool ro = ArgBoolean(info[1], "readOnly");
  return Dispatch<Opened>(
      info, IsSync(info, 2), "imgmount:loop.open",
      [path, ro](Opened& out, Failure& f) {
        int fd = IMGMOUNT_FAULT_OR("open(/dev/loopN)", open(path.c_str(), (ro ? O_RDONLY : O_RDWR) | O_CLOEXEC));
        if (fd < 0) return f.Set("open", path);
        if (IMGMOUNT_FAULT_OR("ioctl(LOOP_GET_STATUS64)", ioctl(fd, LOOP_GET_STATUS64, &out.status)) != 0) {
          f.Set("ioctl(LOOP_GET_STATUS64)", path);
          close(fd);
          return false;
        }
        out.fd = fd;
        return true;
      },
      [](Napi::Env env, Opened& o) -> Napi::Value {
        Napi::Object r = Napi::Object::New(env);
        r.Set("fd", Napi::Number::New(env, o.fd));
        r.Set("status", LoopInfoToJs(env, o.status));
        return r;
      });
}

// loopDetach(fd, clear, path[, sync]) -> void: LOOP_CLR_FD (if clear) then close(fd).
Napi::Value LoopDetachJs(const Napi::CallbackInfo& info) {
  int fd = ArgInt(info, 0, "fd");
  bool clear = ArgBoolean(info[1], "clear");
  std::string path = ArgString(info, 2, "path");
  return Dispatch<int>(
      info, IsSync(info, 3), "imgmount:loop.detach",
      [fd, clear, path](int&, Failure& f) { return LoopDetach(fd, clear, path, f); },
      [](Napi::Env env, int&) { return env.Undefined(); });
}

// loopProbeConfigure([sync]) -> errno of LOOP_CONFIGURE with an invalid backing fd (-1) on a
// free device: EBADF means the ioctl exists; EINVAL/ENOTTY means it does not. Binds nothing.
Napi::Value LoopProbeConfigure(const Napi::CallbackInfo& info) {
  return Dispatch<int>(
      info, IsSync(info, 0), "imgmount:loop.probe",
      [](int& out, Failure& f) {
        int ctl = open("/dev/loop-control", O_RDWR | O_CLOEXEC);
        if (ctl < 0) return f.Set("open", "/dev/loop-control");
        int n = ioctl(ctl, LOOP_CTL_GET_FREE);
        int e = errno;
        close(ctl);
        if (n < 0) return f.Set("ioctl(LOOP_CTL_GET_FREE)", "/dev/loop-control", "", e);
        std::string path = LoopPath(n);
        int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
        if (fd < 0) return f.Set("open", path);
        struct loop_config cfg;
        memset(&cfg, 0, sizeof cfg);
        cfg.fd = static_cast<__u32>(-1);
        out = ioctl(fd, LOOP_CONFIGURE, &cfg) == 0 ? 0 : errno;
        if (out == 0) ioctl(fd, LOOP_CLR_FD, 0);  // cannot happen with fd -1; never leave it bound
        close(fd);
        return true;
      },
      [](Napi::Env env, int& e) { return Napi::Number::New(env, e); });
}

// flock(fd, 'ex'|'sh'|'un', nonBlocking[, sync]) -> void
Napi::Value Flock(const Napi::CallbackInfo& info) {
  int fd = ArgInt(info, 0, "fd");
  std::string op = ArgString(info, 1, "operation");
  int how;
  if (op == "ex") how = LOCK_EX;
  else if (op == "sh") how = LOCK_SH;
  else if (op == "un") how = LOCK_UN;
  else throw Napi::TypeError::New(info.Env(), "operation must be 'ex', 'sh' or 'un'");
  if (ArgBoolean(info[2], "nonBlocking")) how |= LOCK_NB;
  return Dispatch<int>(
      info, IsSync(info, 3), "imgmount:flock",
      [fd, how](int&, Failure& f) {
        if (flock(fd, how) != 0) return f.Set("flock");
        return true;
      },
      [](Napi::Env env, int&) { return env.Undefined(); });
}

}  // namespace

void InitLoop(Napi::Env env, Napi::Object exports) {
  exports.Set("loopCtlGetFree", Napi::Function::New(env, LoopCtlGetFree, "loopCtlGetFree"));
  exports.Set("loopAttach", Napi::Function::New(env, LoopAttachJs, "loopAttach"));
  exports.Set("loopSetStatus", Napi::Function::New(env, LoopSetStatus, "loopSetStatus"));
  exports.Set("loopGetStatus", Napi::Function::New(env, LoopGetStatus, "loopGetStatus"));
  exports.Set("loopOpen", Napi::Function::New(env, LoopOpen, "loopOpen"));
  exports.Set("loopDetach", Napi::Function::New(env, LoopDetachJs, "loopDetach"));
  exports.Set("loopProbeConfigure", Napi::Function::New(env, LoopProbeConfigure, "loopProbeConfigure"));
  exports.Set("flock", Napi::Function::New(env, Flock, "flock"));
}

}  // namespace imgmount
