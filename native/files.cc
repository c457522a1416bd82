// Small files read or written whole in one worker hop (lib/ decides where, what and whether;
// this file only performs the steps, in order, stopping at the first that fails):
//
//   readTextFiles(paths, maxBytes[, sync])
//     each file's text (at most maxBytes), or the errno that stopped reading it
//
//   closeFd(fd)
//     close(2) on the pool, for fds the addon opened (openImage, openAs): closing can wait (a
//     FUSE FLUSH, an NFS write-back). An fd fs.open gave goes back through fs.close instead: a
//     worker thread's exit closes those fs.close did not take back. The fd is released even
//     when close fails (EIO): the error is a report, never a reason to close it again.
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
#include "files.h"

namespace imgmount {

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

namespace {

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

// closeFd(fd) -> undefined
Napi::Value CloseFd(const Napi::CallbackInfo& info) {
  int fd = ArgInt(info, 0, "fd");
  return Dispatch<int>(
      info, false, "imgmount:files.close",
      [fd](int&, Failure& f) {
        // EINTR: Linux has released the fd already; retrying could close someone else's.
        if (close(fd) != 0 && errno != EINTR) return f.Set("close");
        return true;
      },
      [](Napi::Env env, int&) -> Napi::Value { return env.Undefined(); });
}

// readTextFiles(paths, maxBytes[, sync]) -> (string | number)[]: each file's text, or the errno
// that stopped it. One worker hop for many small files: the sysfs attributes a loop scan
// reads, /proc/PID/stat of a process checked before it is signalled.
Napi::Value ReadTextFiles(const Napi::CallbackInfo& info) {
  if (!info[0].IsArray()) throw Napi::TypeError::New(info.Env(), "paths must be an array of strings");
  Napi::Array arr = info[0].As<Napi::Array>();
  std::vector<std::string> paths;
  for (uint32_t i = 0; i < arr.Length(); i++) {
    Napi::Value v = arr.Get(i);
    if (!v.IsString()) throw Napi::TypeError::New(info.Env(), "paths must be an array of strings");
    paths.push_back(v.As<Napi::String>().Utf8Value());
  }
  size_t max = static_cast<size_t>(ArgUint64(info[1], "maxBytes"));
  struct Read {
    std::vector<std::string> text;
    std::vector<int> err;
  };
  return Dispatch<Read>(
      info, ArgBool(info[2], false), "imgmount:files.readText",
      [paths, max](Read& out, Failure&) {
        out.text.resize(paths.size());
        out.err.assign(paths.size(), 0);
        std::vector<char> buf(max);
        for (size_t i = 0; i < paths.size(); i++) {
          int fd = open(paths[i].c_str(), O_RDONLY | O_CLOEXEC);
          if (fd < 0) {
            out.err[i] = errno;
            continue;
          }
          size_t got = 0;
          while (got < max) {
            ssize_t n = read(fd, buf.data() + got, max - got);
            if (n < 0 && errno == EINTR) continue;
            if (n < 0) {
              out.err[i] = errno;
              break;
            }
            if (n == 0) break;
            got += static_cast<size_t>(n);
          }
          close(fd);
          if (!out.err[i]) out.text[i].assign(buf.data(), got);
        }
        return true;
      },
      [](Napi::Env env, Read& r) -> Napi::Value {
        Napi::Array a = Napi::Array::New(env, r.text.size());
        for (size_t i = 0; i < r.text.size(); i++)
          a.Set(static_cast<uint32_t>(i), r.err[i] ? Napi::Value(Napi::Number::New(env, r.err[i]))
                                                   : Napi::Value(Napi::String::New(env, r.text[i])));
        return a;
      });
}

}  // namespace

void InitFiles(Napi::Env env, Napi::Object exports) {
  exports.Set("replaceFile", Napi::Function::New(env, ReplaceFileJs, "replaceFile"));
  exports.Set("closeFd", Napi::Function::New(env, CloseFd, "closeFd"));
  exports.Set("readTextFiles", Napi::Function::New(env, ReadTextFiles, "readTextFiles"));
}

}  // namespace imgmount
