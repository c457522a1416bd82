// Small files written whole in one worker hop (lib/drivers/mount-record.ts decides where,
// what and whether; this file only performs the steps, in order, stopping at the first that
// fails):
//
//   replaceFile(tmpPath, path, data, mode[, options[, sync]])
//     open(tmpPath, O_WRONLY|O_CREAT|O_EXCL|O_NOFOLLOW|O_CLOEXEC, mode) -> write all of data
//     -> close -> rename(tmpPath, path); after a failure once tmpPath exists, it is unlinked.
//     options.exclusive: link(tmpPath, path) instead of the rename (EEXIST, reported with
//     syscall "link", if anything is at `path` already), then unlink(tmpPath).
//
// The rename (or link) makes the new contents appear at `path` whole or not at all;
// O_EXCL|O_NOFOLLOW never write through anything already at tmpPath. link() never replaces
// what is there, so of several writers of one `path` exactly one succeeds. Once the link
// succeeded the file is published: a failing unlink of tmpPath after it is not reported (the
// temp file is named after the writer's pid, so cleanup removes it once the writer is gone).
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include "addon.h"
#include "faults.h"

namespace imgmount {

namespace {

bool ReplaceFile(const std::string& tmp, const std::string& path, const std::vector<uint8_t>& data, mode_t mode, bool exclusive, Failure& f) {
  int fd = IMGMOUNT_FAULT_OR("open(O_EXCL tmp)", open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode));
  if (fd < 0) return f.Set("open", tmp);
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = IMGMOUNT_FAULT_OR("write(tmp)", write(fd, data.data() + done, data.size() - done));
    if (n < 0) {
      if (errno == EINTR) continue;
      f.Set("write", tmp);
      close(fd);
      unlink(tmp.c_str());
      return false;
    }
    done += static_cast<size_t>(n);
  }
  // close releases the fd even when it fails (write-back errors): a fault is reported after it.
  int closed = close(fd);
  if (imgmount_fault("close(tmp)") != 0) closed = -1;
  if (closed != 0) {
    f.Set("close", tmp);
    unlink(tmp.c_str());
    return false;
  }
  if (exclusive) {
    if (IMGMOUNT_FAULT_OR("link(tmp)", link(tmp.c_str(), path.c_str())) != 0) {
      f.Set("link", tmp, path);
      unlink(tmp.c_str());
      return false;
    }
    unlink(tmp.c_str());
    return true;
  }
  if (IMGMOUNT_FAULT_OR("rename(tmp)", rename(tmp.c_str(), path.c_str())) != 0) {
    f.Set("rename", tmp, path);
    unlink(tmp.c_str());
    return false;
  }
  return true;
}

Napi::Value ReplaceFileJs(const Napi::CallbackInfo& info) {
  std::string tmp = ArgString(info, 0, "tmpPath");
  std::string path = ArgString(info, 1, "path");
  if (!info[2].IsBuffer()) throw Napi::TypeError::New(info.Env(), "data must be a Buffer");
  Napi::Buffer<uint8_t> b = info[2].As<Napi::Buffer<uint8_t>>();
  std::vector<uint8_t> data(b.Data(), b.Data() + b.Length());
  mode_t mode = static_cast<mode_t>(ArgUint64(info[3], "mode") & 07777);
  bool exclusive = false;
  if (!info[4].IsUndefined()) exclusive = ArgBool(ArgObject(info, 4, "options").Get("exclusive"), false);
  return Dispatch<int>(
      info, ArgBool(info[5], false), "imgmount:files.replace",
      [tmp, path, data, mode, exclusive](int&, Failure& f) { return ReplaceFile(tmp, path, data, mode, exclusive, f); },
      [](Napi::Env env, int&) { return env.Undefined(); });
}

}  // namespace

void InitFiles(Napi::Env env, Napi::Object exports) {
  exports.Set("replaceFile", Napi::Function::New(env, ReplaceFileJs, "replaceFile"));
}

}  // namespace imgmount
