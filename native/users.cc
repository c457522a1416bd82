// User and group lookups through NSS (getpwnam_r/getgrnam_r), which Node does not expose.
// They may reach a network directory service, so they run on the libuv pool.
#include <grp.h>
#include <pwd.h>
#include <unistd.h>

#include "addon.h"

namespace imgmount {

namespace {

struct IdResult {
  bool found = false;
  uint32_t id = 0;
};

uint32_t IdOf(const struct passwd& p) { return p.pw_uid; }
uint32_t IdOf(const struct group& g) { return g.gr_gid; }

template <typename Entry, typename Fn>
bool LookupId(const std::string& name, IdResult& out, Failure& f, const char* call, Fn fn) {
  long hint = sysconf(_SC_GETPW_R_SIZE_MAX);
  size_t len = hint > 0 ? static_cast<size_t>(hint) : 4096;
  for (;;) {
    std::vector<char> buf(len);
    Entry entry;
    Entry* result = nullptr;
    int rc = fn(name.c_str(), &entry, buf.data(), buf.size(), &result);
    if (rc == ERANGE && len < (1u << 20)) {
      len *= 2;
      continue;
    }
    // Not found is rc 0 (or ENOENT/ESRCH/EBADF/EPERM from some NSS modules) with no result.
    if (result) {
      out.found = true;
      out.id = IdOf(*result);
      return true;
    }
    if (rc == 0 || rc == ENOENT || rc == ESRCH || rc == EBADF || rc == EPERM) return true;
    return f.Set(call, name, "", rc);
  }
}

Napi::Value ToJs(Napi::Env env, IdResult& r) {
  if (!r.found) return env.Null();
  return Napi::Number::New(env, r.id);
}

// lookupUser(name) -> Promise<number | null>
Napi::Value LookupUser(const Napi::CallbackInfo& info) {
  std::string name = ArgString(info, 0, "name");
  return Dispatch<IdResult>(
      info, ArgBool(info[1], false), "imgmount:users.lookupUser",
      [name](IdResult& out, Failure& f) { return LookupId<struct passwd>(name, out, f, "getpwnam_r", getpwnam_r); },
      ToJs);
}

// lookupGroup(name) -> Promise<number | null>
Napi::Value LookupGroup(const Napi::CallbackInfo& info) {
  std::string name = ArgString(info, 0, "name");
  return Dispatch<IdResult>(
      info, ArgBool(info[1], false), "imgmount:users.lookupGroup",
      [name](IdResult& out, Failure& f) { return LookupId<struct group>(name, out, f, "getgrnam_r", getgrnam_r); },
      ToJs);
}

}  // namespace

void InitUsers(Napi::Env env, Napi::Object exports) {
  exports.Set("lookupUser", Napi::Function::New(env, LookupUser, "lookupUser"));
  exports.Set("lookupGroup", Napi::Function::New(env, LookupGroup, "lookupGroup"));
}

}  // namespace imgmount
