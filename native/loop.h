// Loop-device syscalls shared by loop.cc and the fused attach+mount call in attach-mount.cc.
#pragma once

#include <linux/loop.h>

#include <string>

#include "addon.h"

namespace imgmount {

// What lib/ asks an attach to do; ParseLoopAttachSpec requires every field (lib/loop/context.ts
// attachSpec() gives them all). `device` -1 means "ask LOOP_CTL_GET_FREE".
struct LoopAttachSpec {
  int imageFd = -1;
  std::string imagePath;  // opened (O_CLOEXEC) and closed by the call when imageFd is -1
  int device = -1;
  bool openReadOnly = false;  // open /dev/loopN (and imagePath) O_RDONLY, else O_RDWR
  bool legacy = false;       // LOOP_SET_FD (+ LOOP_SET_BLOCK_SIZE) instead of LOOP_CONFIGURE
  uint32_t blockSize = 0;
  struct loop_info64 info {};
  // Test seam (lib/loop/internal.ts testHooks.injectErrno): when non-zero, the binding ioctl
  // (LOOP_CONFIGURE or LOOP_SET_FD) is not made and fails with this errno instead, after the
  // real GET_FREE and open, so the failure path (closing the unbound device) is the real one.
  // Inert unless a test sets it; the retry decision stays in lib/.
  int injectErrno = 0;
};

struct LoopAttached {
  uint64_t imageDevice = 0;  // fstat of the backing file, to verify the binding against
  uint64_t imageInode = 0;
  int fd = -1;
  int number = -1;
  std::string path;
  bool haveStatus = false;
  struct loop_info64 status {};
};

std::string LoopPath(int number);
// [open imagePath ->] fstat(image) -> GET_FREE (unless spec.device >= 0) -> open -> CONFIGURE -> GET_STATUS64, or for the legacy
// method GET_FREE -> open -> SET_FD [-> SET_BLOCK_SIZE]. Stops at the first failure and
// releases what it did (LOOP_CLR_FD only once it had bound the device).
bool LoopAttach(const LoopAttachSpec& spec, LoopAttached& out, Failure& f);
// LOOP_CLR_FD (when `clear`) then close; closes even when the ioctl failed.
bool LoopDetach(int fd, bool clear, const std::string& path, Failure& f);

LoopAttachSpec ParseLoopAttachSpec(Napi::Object o);
Napi::Value LoopInfoToJs(Napi::Env env, const struct loop_info64& s);
Napi::Object LoopAttachedToJs(Napi::Env env, const LoopAttached& a);

}  // namespace imgmount
