// Entry point: per-environment state, the SystemError bridge and argument helpers.
#include "addon.h"

#include <climits>

namespace imgmount {

Napi::Value MakeSystemError(Napi::Env env, const Failure& f) {
  Napi::Object init = Napi::Object::New(env);
  init.Set("errno", Napi::Number::New(env, -f.err));
  init.Set("syscall", Napi::String::New(env, f.syscall));
  if (!f.path.empty()) init.Set("path", Napi::String::New(env, f.path));
  if (!f.dest.empty()) init.Set("dest", Napi::String::New(env, f.dest));
  if (!f.kernelMessages.empty()) {
    Napi::Array msgs = Napi::Array::New(env, f.kernelMessages.size());
    for (size_t i = 0; i < f.kernelMessages.size(); i++) msgs.Set(i, Napi::String::New(env, f.kernelMessages[i]));
    init.Set("kernelMessages", msgs);
  }
  Addon* addon = env.GetInstanceData<Addon>();
  if (addon && !addon->systemErrorClass.IsEmpty()) {
    Napi::Value err = addon->systemErrorClass.New({init});
    if (!env.IsExceptionPending()) return err;
    // The JS constructor itself threw: fall through to a plain Error carrying the facts.
    env.GetAndClearPendingException();
  }
  Napi::Error plain = Napi::Error::New(env, f.syscall + " failed with errno " + std::to_string(f.err));
  plain.Set("errno", Napi::Number::New(env, -f.err));
  plain.Set("syscall", Napi::String::New(env, f.syscall));
  return plain.Value();
}

int32_t ArgInt(const Napi::CallbackInfo& info, size_t i, const char* name) {
  if (!info[i].IsNumber()) throw Napi::TypeError::New(info.Env(), std::string(name) + " must be a number");
  return info[i].As<Napi::Number>().Int32Value();
}

int64_t ArgInt64(const Napi::Value& v, const char* name) {
  if (v.IsBigInt()) {
    bool lossless = false;
    int64_t r = v.As<Napi::BigInt>().Int64Value(&lossless);
    if (!lossless) throw Napi::RangeError::New(v.Env(), std::string(name) + " is out of range");
    return r;
  }
  if (!v.IsNumber()) throw Napi::TypeError::New(v.Env(), std::string(name) + " must be a number or bigint");
  return v.As<Napi::Number>().Int64Value();
}

uint64_t ArgUint64(const Napi::Value& v, const char* name) {
  if (v.IsBigInt()) {
    bool lossless = false;
    uint64_t r = v.As<Napi::BigInt>().Uint64Value(&lossless);
    if (!lossless) throw Napi::RangeError::New(v.Env(), std::string(name) + " is out of range");
    return r;
  }
  if (!v.IsNumber()) throw Napi::TypeError::New(v.Env(), std::string(name) + " must be a number or bigint");
  double d = v.As<Napi::Number>().DoubleValue();
  if (d < 0 || d > 9007199254740991.0) throw Napi::RangeError::New(v.Env(), std::string(name) + " is out of range");
  return static_cast<uint64_t>(d);
}

uint32_t ArgId(const Napi::Value& v, const char* name) {
  if (!v.IsNumber()) throw Napi::TypeError::New(v.Env(), std::string(name) + " must be a number");
  double d = v.As<Napi::Number>().DoubleValue();
  if (!(d >= 0 && d < 4294967295.0) || d != static_cast<double>(static_cast<uint32_t>(d)))
    throw Napi::RangeError::New(v.Env(), std::string(name) + " must be an integer from 0 to 4294967294");
  return static_cast<uint32_t>(d);
}

std::string ArgString(const Napi::CallbackInfo& info, size_t i, const char* name) {
  if (!info[i].IsString()) throw Napi::TypeError::New(info.Env(), std::string(name) + " must be a string");
  return info[i].As<Napi::String>().Utf8Value();
}

bool ArgBool(const Napi::Value& v, bool dflt) {
  if (v.IsUndefined() || v.IsNull()) return dflt;
  return v.ToBoolean().Value();
}

Napi::Object ArgObject(const Napi::CallbackInfo& info, size_t i, const char* name) {
  if (!info[i].IsObject()) throw Napi::TypeError::New(info.Env(), std::string(name) + " must be an object");
  return info[i].As<Napi::Object>();
}

Napi::Value BigOrNumber(Napi::Env env, uint64_t v) {
  if (v <= 9007199254740991ULL) return Napi::Number::New(env, static_cast<double>(v));
  return Napi::BigInt::New(env, v);
}

// initialize({ SystemError }): lib/ hands over its error class once per environment.
static Napi::Value Initialize(const Napi::CallbackInfo& info) {
  Napi::Object opts = ArgObject(info, 0, "options");
  Napi::Value cls = opts.Get("SystemError");
  if (!cls.IsFunction()) throw Napi::TypeError::New(info.Env(), "options.SystemError must be a class");
  Addon* addon = info.Env().GetInstanceData<Addon>();
  addon->systemErrorClass = Napi::Persistent(cls.As<Napi::Function>());
  return info.Env().Undefined();
}

static Napi::Object Init(Napi::Env env, Napi::Object exports) {
  env.SetInstanceData<Addon>(new Addon());
  exports.Set("initialize", Napi::Function::New(env, Initialize, "initialize"));
  exports.Set("abiVersion", Napi::Number::New(env, 1));
  InitFiles(env, exports);
  InitImage(env, exports);
  InitLock(env, exports);
  InitLoop(env, exports);
  InitMount(env, exports);
  InitNamespace(env, exports);
  InitPath(env, exports);
  InitUsers(env, exports);
  InitCredentials(env, exports);
  return exports;
}

}  // namespace imgmount

static Napi::Object InitAddon(Napi::Env env, Napi::Object exports) { return imgmount::Init(env, exports); }

NODE_API_MODULE(imgmount, InitAddon)
