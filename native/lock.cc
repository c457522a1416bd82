// Open-file-description byte-range locks (F_OFD_SETLK / F_OFD_GETLK).
//
// OFD locks belong to the open file, not the process, so two opens of one image in the
// same process conflict as they should, and the lock goes away when the fd is closed.
#include <fcntl.h>
#include <unistd.h>

#include "addon.h"

namespace imgmount {

namespace {

struct LockArgs {
  int fd;
  short type;
  int64_t start;
  int64_t len;
};

short LockType(Napi::Env env, const std::string& t) {
  if (t == "read") return F_RDLCK;
  if (t == "write") return F_WRLCK;
  if (t == "unlock") return F_UNLCK;
  throw Napi::TypeError::New(env, "lock type must be 'read', 'write' or 'unlock'");
}

const char* LockName(short t) {
  return t == F_RDLCK ? "read" : t == F_WRLCK ? "write" : "unlock";
}

LockArgs ParseArgs(const Napi::CallbackInfo& info) {
  LockArgs a;
  a.fd = ArgInt(info, 0, "fd");
  a.type = LockType(info.Env(), ArgString(info, 1, "type"));
  a.start = ArgInt64(info[2], "start");
  a.len = ArgInt64(info[3], "length");
  return a;
}

struct flock MakeFlock(const LockArgs& a) {
  struct flock fl = {};
  fl.l_type = a.type;
  fl.l_whence = SEEK_SET;
  fl.l_start = a.start;
  fl.l_len = a.len;
  fl.l_pid = 0;  // required to be 0 for OFD locks
  return fl;
}

// ofdSetLock(fd, 'read'|'write'|'unlock', start, length[, sync]) -> Promise<void>
Napi::Value OfdSetLock(const Napi::CallbackInfo& info) {
  LockArgs a = ParseArgs(info);
  bool sync = ArgBool(info[4], false);
  return Dispatch<int>(
      info, sync, "imgmount:lock.set",
      [a](int&, Failure& f) {
        struct flock fl = MakeFlock(a);
        if (fcntl(a.fd, F_OFD_SETLK, &fl) != 0) return f.Set("fcntl(F_OFD_SETLK)");
        return true;
      },
      [](Napi::Env env, int&) { return env.Undefined(); });
}

// ofdGetLock(fd, 'read'|'write', start, length) -> Promise<null | {type, start, length}>
// Describes the first lock that would block the requested one (OFD locks have no pid).
Napi::Value OfdGetLock(const Napi::CallbackInfo& info) {
  LockArgs a = ParseArgs(info);
  bool sync = ArgBool(info[4], false);
  return Dispatch<struct flock>(
      info, sync, "imgmount:lock.get",
      [a](struct flock& out, Failure& f) {
        out = MakeFlock(a);
        if (fcntl(a.fd, F_OFD_GETLK, &out) != 0) return f.Set("fcntl(F_OFD_GETLK)");
        return true;
      },
      [](Napi::Env env, struct flock& fl) -> Napi::Value {
        if (fl.l_type == F_UNLCK) return env.Null();
        Napi::Object o = Napi::Object::New(env);
        o.Set("type", Napi::String::New(env, LockName(fl.l_type)));
        o.Set("start", Napi::Number::New(env, static_cast<double>(fl.l_start)));
        o.Set("length", Napi::Number::New(env, static_cast<double>(fl.l_len)));
        o.Set("pid", Napi::Number::New(env, fl.l_pid));
        return o;
      });
}

}  // namespace

void InitLock(Napi::Env env, Napi::Object exports) {
  exports.Set("ofdSetLock", Napi::Function::New(env, OfdSetLock, "ofdSetLock"));
  exports.Set("ofdGetLock", Napi::Function::New(env, OfdGetLock, "ofdGetLock"));
}

}  // namespace imgmount
