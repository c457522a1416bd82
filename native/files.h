// Whole-file writes shared by files.cc and the calls that write a file in their own hop.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

#include "addon.h"

namespace imgmount {

// Writes `data` to `tmp` (O_EXCL|O_NOFOLLOW) and renames it over `path`, or with `exclusive`
// links it to `path` (EEXIST, syscall "link", when something is there); see files.cc.
bool ReplaceFile(const std::string& tmp, const std::string& path, const std::vector<uint8_t>& data, mode_t mode, bool exclusive, Failure& f);

}  // namespace imgmount
