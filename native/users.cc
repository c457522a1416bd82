// User and group lookups through NSS (getpwnam_r/getgrnam_r, getpwuid_r + getgrouplist),
// which Node does not expose.
// They may reach a network directory service, so they run on the addon's pool.
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

struct UserInfo {
  bool found = false;
  std::string name;
  gid_t gid = 0;
  std::vector<gid_t> groups;
};

bool LookupUserInfo(uid_t uid, UserInfo& out, Failure& f) {
  long hint = sysconf(_SC_GETPW_R_SIZE_MAX);
  size_t len = hint > 0 ? static_cast<size_t>(hint) : 4096;
  std::string who = std::to_string(uid);
  for (;;) {
    std::vector<char> buf(len);
    struct passwd entry;
    struct passwd* result = nullptr;
    int rc = getpwuid_r(uid, &entry, buf.data(), buf.size(), &result);
    if (rc == ERANGE && len < (1u << 20)) {
      len *= 2;
      continue;
    }
    if (!result) {
      if (rc == 0 || rc == ENOENT || rc == ESRCH || rc == EBADF || rc == EPERM) return true;
      return f.Set("getpwuid_r", who, "", rc);
    }
    out.found = true;
    out.name = result->pw_name;
    out.gid = result->pw_gid;
    break;
  }
  // getgrouplist: -1 with the needed count in n when the buffer is too small.
  int n = 32;
  for (int tries = 0; tries < 8; tries++) {
    std::vector<gid_t> groups(static_cast<size_t>(n));
    int want = n;
    if (getgrouplist(out.name.c_str(), out.gid, groups.data(), &want) >= 0) {
      groups.resize(static_cast<size_t>(want));
      out.groups = std::move(groups);
      return true;
    }
    n = want > n ? want : n * 2;
  }
  return f.Set("getgrouplist", out.name, "", ERANGE);
}

// userInfo(uid) -> Promise<{ name, gid, groups } | null>: the passwd entry's name and primary
// group, and every group the group database gives that user (primary included).
Napi::Value UserInfoJs(const Napi::CallbackInfo& info) {
  uid_t uid = ArgId(info[0], "uid");
  return Dispatch<UserInfo>(
      info, ArgBool(info[1], false), "imgmount:users.userInfo",
      [uid](UserInfo& out, Failure& f) { return LookupUserInfo(uid, out, f); },
      [](Napi::Env env, UserInfo& u) -> Napi::Value {
        if (!u.found) return env.Null();
        Napi::Object o = Napi::Object::New(env);
        o.Set("name", Napi::String::New(env, u.name));
        o.Set("gid", Napi::Number::New(env, u.gid));
        Napi::Array g = Napi::Array::New(env, u.groups.size());
        for (size_t i = 0; i < u.groups.size(); i++) g.Set(static_cast<uint32_t>(i), Napi::Number::New(env, u.groups[i]));
        o.Set("groups", g);
        return o;
      });
}

}  // namespace

void InitUsers(Napi::Env env, Napi::Object exports) {
  exports.Set("lookupUser", Napi::Function::New(env, LookupUser, "lookupUser"));
  exports.Set("lookupGroup", Napi::Function::New(env, LookupGroup, "lookupGroup"));
  exports.Set("userInfo", Napi::Function::New(env, UserInfoJs, "userInfo"));
}

}  // namespace imgmount
