// Mount syscalls shared by mount.cc and the fused attach+mount call (attach-mount.cc).
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "addon.h"

namespace imgmount {

struct FsOption {
  std::string key;
  std::string value;
  bool hasValue = false;
};

// One mount as lib/ decided it: mount(2) (`legacy`) or fsopen -> fsconfig... -> fsmount
// [-> mount_setattr(IDMAP)] -> move_mount (or kept detached and returned as an fd).
struct MountSpec {
  bool legacy = false;
  std::string source;  // empty in a fused attach: the loop device's path
  std::string target;              // for messages when targetFd >= 0
  int targetFd = -1;               // a pinned directory: mount onto it (T_EMPTY_PATH, /proc/self/fd/N)
  std::string fstype;
  unsigned long flags = 0;  // mount(2) flags
  bool hasData = false;
  std::string data;                // mount(2) data
  std::vector<FsOption> options;   // fsconfig keys
  unsigned int attrs = 0;          // MOUNT_ATTR_* for fsmount
  int usernsFd = -1;               // MOUNT_ATTR_IDMAP when >= 0
  bool detached = false;           // return the mount fd instead of attaching it at target
  bool keepMountFd = false;        // attached, but also return the mount fd (its root)
  // fsconfig(FSCONFIG_SET_FD) keys, after `options`: set in native code only, for fds a call
  // made itself (an overlay's layers, attach-mount.cc).
  std::vector<std::pair<std::string, int>> fdOptions;
};

struct MountDone {
  int mountFd = -1;  // detached or keepMountFd: the mount's fd (the caller closes it)
  uint64_t mountId = 0;  // statx mount id of the new mount (new API; 0 if unknown)
  std::vector<std::string> messages;  // kernel messages of the fs context, also on success
};

bool DoMount(const MountSpec& spec, MountDone& out, Failure& f);
MountSpec ParseMountSpec(Napi::Object o);
void MountDoneToJs(Napi::Env env, Napi::Object target, const MountDone& d);

}  // namespace imgmount
