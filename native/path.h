// A pinned path as the calls that open one describe it (path.cc), for the other calls that
// pin a path in their own hop (attach-mount.cc).
#pragma once

#include <cstdint>
#include <string>

#include "addon.h"

namespace imgmount {

struct PathInfo {
  int fd = -1;
  uint64_t dev = 0;
  uint64_t ino = 0;
  uint32_t mode = 0;
  uint32_t uid = 0;
  uint32_t gid = 0;
  uint64_t mountId = 0;  // 0 when the kernel cannot tell (before 5.8)
  bool mountRoot = false;
  std::string path;  // the kernel's name for it (readlink of /proc/self/fd/N)
};

// Fills `out` from an open fd (statx, fstat's dev, the kernel's name); on failure closes `fd`.
bool Describe(int fd, PathInfo& out, Failure& f, const std::string& display);
Napi::Value PathInfoToJs(Napi::Env env, PathInfo& p);

}  // namespace imgmount
