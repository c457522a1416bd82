// Namespace fds. Joining a namespace never happens on a Node thread (see
// native/helper/nsenter.c); the addon only tells what kind of namespace an fd refers to, so
// lib/ns/ can reject a wrong fd with a clear error before handing it to the helper.
#include <linux/nsfs.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/stat.h>

#include "addon.h"

namespace imgmount {

namespace {

struct NsInfo {
  int type = 0;
  uint64_t inode = 0;
  uint64_t device = 0;
};

const char* NsTypeName(int t) {
  switch (t) {
    case CLONE_NEWUSER: return "user";
    case CLONE_NEWNS: return "mnt";
    case CLONE_NEWPID: return "pid";
    case CLONE_NEWNET: return "net";
    case CLONE_NEWUTS: return "uts";
    case CLONE_NEWIPC: return "ipc";
    case CLONE_NEWCGROUP: return "cgroup";
#ifdef CLONE_NEWTIME
    case CLONE_NEWTIME: return "time";
#endif
    default: return "unknown";
  }
}

// nsInfo(fd[, sync]) -> { type: 'user' | 'mnt' | ..., inode, device }   (ioctl(NS_GET_NSTYPE) + fstat)
Napi::Value NsInfoJs(const Napi::CallbackInfo& info) {
  int fd = ArgInt(info, 0, "fd");
  return Dispatch<NsInfo>(
      info, ArgBool(info[1], false), "imgmount:ns.info",
      [fd](NsInfo& out, Failure& f) {
        out.type = ioctl(fd, NS_GET_NSTYPE);
        if (out.type < 0) return f.Set("ioctl(NS_GET_NSTYPE)");
        struct stat st;
        if (fstat(fd, &st) != 0) return f.Set("fstat");
        out.inode = st.st_ino;
        out.device = st.st_dev;
        return true;
      },
      [](Napi::Env env, NsInfo& n) -> Napi::Value {
        Napi::Object o = Napi::Object::New(env);
        o.Set("type", Napi::String::New(env, NsTypeName(n.type)));
        o.Set("inode", BigOrNumber(env, n.inode));
        o.Set("device", BigOrNumber(env, n.device));
        return o;
      });
}

}  // namespace

void InitNamespace(Napi::Env env, Napi::Object exports) {
  exports.Set("nsInfo", Napi::Function::New(env, NsInfoJs, "nsInfo"));
}

}  // namespace imgmount
