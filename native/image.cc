// Opening an image and reading its first bytes in one worker hop (lib/image/open-file.ts
// decides what is acceptable; this file only performs the steps, in this order, and stops at
// the first that fails):
//
//   openImage(path, { checkWrite, acceptTypes, window: Buffer }[, sync])
//     realpath -> access(R_OK) [-> access(W_OK), its errno reported, never a failure] -> stat
//     -> (type not in acceptTypes: { refused: 'file-type', mode }, nothing opened)
//     -> open(O_RDONLY|O_NONBLOCK|O_NOFOLLOW|O_CLOEXEC) -> fstat
//     -> (not the file stat'ed: { refused: 'changed' }, fd closed)
//     -> size (st_size, or BLKGETSIZE64 for a block device)
//     -> pread of min(window.length, size) bytes at 0 into `window`, short reads retried
//        until EOF (`headLength` says how many; the call keeps `window` alive until it settles)
//   preadRanges(fd, [[offset, length], ...][, sync]) -> Buffer[]
//     every range read fully (or up to EOF) in one hop: the headers of all partitions at once.
//
// access() checks with the real uid, as Apptainer does; O_NONBLOCK keeps a FIFO swapped in
// after the stat from blocking the open, O_NOFOLLOW refuses a symlink swapped in.
#include <fcntl.h>
#include <linux/fs.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <climits>
#include <cstring>
#include <memory>

#include "addon.h"
#include "faults.h"

namespace imgmount {

namespace {

struct OpenedImage {
  std::string path;
  int fd = -1;
  const char* refused = nullptr;
  uint32_t mode = 0;
  uint64_t dev = 0;
  uint64_t ino = 0;
  uint64_t rdev = 0;
  uint64_t size = 0;
  uint32_t uid = 0;
  uint32_t gid = 0;
  int writeAccess = -1;  // -1: not checked; 0: allowed; else the errno
  size_t headLength = 0;
};

// pread until `len` bytes or EOF; false (errno set) on a read error.
bool PreadFully(int fd, uint8_t* buf, size_t len, uint64_t offset, size_t& got) {
  got = 0;
  while (got < len) {
    ssize_t n = IMGMOUNT_FAULT_OR("pread", pread(fd, buf + got, len - got, static_cast<off_t>(offset + got)));
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    if (n == 0) break;
    got += static_cast<size_t>(n);
  }
  return true;
}

bool OpenImage(const std::string& given, bool checkWrite, const std::vector<uint32_t>& accept, uint8_t* window,
               size_t windowLength, OpenedImage& out, Failure& f) {
  char resolved[PATH_MAX];
  if ((imgmount_fault("realpath") != 0 ? nullptr : realpath(given.c_str(), resolved)) == nullptr) return f.Set("realpath", given);
  out.path = resolved;
  const std::string& p = out.path;
  if (IMGMOUNT_FAULT_OR("access", access(p.c_str(), R_OK)) != 0) return f.Set("access", p);
  if (checkWrite) out.writeAccess = access(p.c_str(), W_OK) == 0 ? 0 : errno;
  struct stat st;
  if (IMGMOUNT_FAULT_OR("stat", stat(p.c_str(), &st)) != 0) return f.Set("stat", p);
  out.mode = st.st_mode;
  bool ok = false;
  for (uint32_t t : accept) ok = ok || (st.st_mode & S_IFMT) == t;
  if (!ok) {
    out.refused = "file-type";
    return true;
  }
  int fd = IMGMOUNT_FAULT_OR("open(image)", open(p.c_str(), O_RDONLY | O_NONBLOCK | O_NOFOLLOW | O_CLOEXEC));
  if (fd < 0) return f.Set("open", p);
  struct stat fst;
  if (IMGMOUNT_FAULT_OR("fstat(image)", fstat(fd, &fst)) != 0) {
    f.Set("fstat", p);
    close(fd);
    return false;
  }
  if (fst.st_dev != st.st_dev || fst.st_ino != st.st_ino || (fst.st_mode & S_IFMT) != (st.st_mode & S_IFMT)) {
    close(fd);
    out.refused = "changed";
    return true;
  }
  out.mode = fst.st_mode;
  out.dev = fst.st_dev;
  out.ino = fst.st_ino;
  out.rdev = fst.st_rdev;
  out.uid = fst.st_uid;
  out.gid = fst.st_gid;
  if (S_ISREG(fst.st_mode)) {
    out.size = static_cast<uint64_t>(fst.st_size);
  } else if (S_ISBLK(fst.st_mode)) {
    uint64_t bytes = 0;
    if (ioctl(fd, BLKGETSIZE64, &bytes) != 0) {
      f.Set("ioctl(BLKGETSIZE64)", p);
      close(fd);
      return false;
    }
    out.size = bytes;
  }
  if (!S_ISDIR(fst.st_mode) && windowLength > 0) {
    size_t want = out.size < windowLength ? static_cast<size_t>(out.size) : windowLength;
    if (!PreadFully(fd, window, want, 0, out.headLength)) {
      f.Set("pread", p);
      close(fd);
      return false;
    }
  }
  out.fd = fd;
  return true;
}

Napi::Buffer<uint8_t> ToBuffer(Napi::Env env, std::vector<uint8_t>& bytes) {
  return Napi::Buffer<uint8_t>::Copy(env, bytes.data(), bytes.size());
}

Napi::Value OpenImageJs(const Napi::CallbackInfo& info) {
  std::string path = ArgString(info, 0, "path");
  Napi::Object o = ArgObject(info, 1, "options");
  bool checkWrite = ArgBool(o.Get("checkWrite"), false);
  std::vector<uint32_t> accept;
  Napi::Value types = o.Get("acceptTypes");
  if (!types.IsArray()) throw Napi::TypeError::New(info.Env(), "acceptTypes must be an array of S_IFMT values");
  Napi::Array a = types.As<Napi::Array>();
  for (uint32_t i = 0; i < a.Length(); i++) accept.push_back(static_cast<uint32_t>(ArgUint64(a.Get(i), "acceptTypes[]")));
  Napi::Value w = o.Get("window");
  if (!w.IsBuffer()) throw Napi::TypeError::New(info.Env(), "window must be a Buffer");
  Napi::Buffer<uint8_t> buf = w.As<Napi::Buffer<uint8_t>>();
  uint8_t* window = buf.Data();
  size_t windowLength = buf.Length();
  // Held until the worker is gone (destroyed on the JS thread): the bytes stay where they are.
  auto keep = std::make_shared<Napi::Reference<Napi::Buffer<uint8_t>>>(Napi::Persistent(buf));
  return Dispatch<OpenedImage>(
      info, ArgBool(info[2], false), "imgmount:image.open",
      [path, checkWrite, accept, window, windowLength, keep](OpenedImage& out, Failure& f) {
        return OpenImage(path, checkWrite, accept, window, windowLength, out, f);
      },
      [](Napi::Env env, OpenedImage& r) -> Napi::Value {
        Napi::Object o = Napi::Object::New(env);
        o.Set("path", r.path);
        o.Set("fd", Napi::Number::New(env, r.fd));
        if (r.refused) o.Set("refused", r.refused);
        o.Set("mode", Napi::Number::New(env, r.mode));
        o.Set("dev", BigOrNumber(env, r.dev));
        o.Set("ino", BigOrNumber(env, r.ino));
        o.Set("rdev", BigOrNumber(env, r.rdev));
        o.Set("size", BigOrNumber(env, r.size));
        o.Set("uid", Napi::Number::New(env, r.uid));
        o.Set("gid", Napi::Number::New(env, r.gid));
        if (r.writeAccess >= 0) o.Set("writeAccess", Napi::Number::New(env, r.writeAccess));
        o.Set("headLength", Napi::Number::New(env, static_cast<double>(r.headLength)));
        return o;
      });
}

struct Ranges {
  std::vector<std::pair<uint64_t, size_t>> want;
  std::vector<std::vector<uint8_t>> got;
};

Napi::Value PreadRangesJs(const Napi::CallbackInfo& info) {
  int fd = ArgInt(info, 0, "fd");
  if (!info[1].IsArray()) throw Napi::TypeError::New(info.Env(), "ranges must be an array of [offset, length]");
  Napi::Array a = info[1].As<Napi::Array>();
  std::vector<std::pair<uint64_t, size_t>> want;
  uint64_t total = 0;
  for (uint32_t i = 0; i < a.Length(); i++) {
    Napi::Value r = a.Get(i);
    if (!r.IsArray() || r.As<Napi::Array>().Length() != 2) throw Napi::TypeError::New(info.Env(), "each range must be [offset, length]");
    uint64_t off = ArgUint64(r.As<Napi::Array>().Get(0u), "offset");
    uint64_t len = ArgUint64(r.As<Napi::Array>().Get(1u), "length");
    total += len;
    if (total > (64u << 20)) throw Napi::RangeError::New(info.Env(), "ranges must add up to at most 64 MiB");
    want.emplace_back(off, static_cast<size_t>(len));
  }
  return Dispatch<Ranges>(
      info, ArgBool(info[2], false), "imgmount:image.preadRanges",
      [fd, want](Ranges& out, Failure& f) {
        out.want = want;
        for (auto& [off, len] : out.want) {
          std::vector<uint8_t> b(len);
          size_t got = 0;
          if (!PreadFully(fd, b.data(), len, off, got)) return f.Set("pread");
          b.resize(got);
          out.got.push_back(std::move(b));
        }
        return true;
      },
      [](Napi::Env env, Ranges& r) -> Napi::Value {
        Napi::Array a = Napi::Array::New(env, r.got.size());
        for (uint32_t i = 0; i < r.got.size(); i++) a.Set(i, ToBuffer(env, r.got[i]));
        return a;
      });
}

}  // namespace

void InitImage(Napi::Env env, Napi::Object exports) {
  exports.Set("openImage", Napi::Function::New(env, OpenImageJs, "openImage"));
  exports.Set("preadRanges", Napi::Function::New(env, PreadRangesJs, "preadRanges"));
}

}  // namespace imgmount
