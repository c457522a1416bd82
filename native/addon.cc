// Entry point: per-environment state, the SystemError bridge and argument helpers.
#include "addon.h"

#include <climits>
#include <cstring>

#include "faults.h"

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

std::vector<uint64_t> ArgBigUint64Array(const Napi::Value& v, const char* name) {
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_biguint64_array)
    throw Napi::TypeError::New(v.Env(), std::string(name) + " must be a BigUint64Array");
  Napi::TypedArrayOf<uint64_t> a = v.As<Napi::TypedArrayOf<uint64_t>>();
  return std::vector<uint64_t>(a.Data(), a.Data() + a.ElementLength());
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

bool ArgBoolean(const Napi::Value& v, const char* name) {
  if (!v.IsBoolean()) throw Napi::TypeError::New(v.Env(), std::string(name) + " must be a boolean");
  return v.As<Napi::Boolean>().Value();
}

std::string ArgStringValue(const Napi::Value& v, const char* name) {
  if (!v.IsString()) throw Napi::TypeError::New(v.Env(), std::string(name) + " must be a string");
  return v.As<Napi::String>().Utf8Value();
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

// injectFaults(rules | null): test-only (see faults.h). An array arms fault injection (and
// resets the hit counters): each { step, errno, skip = 0, times = 1 } makes hits skip+1 ..
// skip+times of that native step fail with errno. null disarms. Throws a TypeError for a
// malformed rule and a RangeError for an errno that may not be injected.
static Napi::Value InjectFaults(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info[0].IsNull() || info[0].IsUndefined()) {
    imgmount_faults_disarm();
    return env.Undefined();
  }
  if (!info[0].IsArray()) throw Napi::TypeError::New(env, "rules must be an array or null");
  Napi::Array a = info[0].As<Napi::Array>();
  if (a.Length() > IMGMOUNT_FAULT_RULES_MAX)
    throw Napi::RangeError::New(env, "at most " + std::to_string(IMGMOUNT_FAULT_RULES_MAX) + " rules");
  std::vector<imgmount_fault_rule> rules(a.Length());
  for (uint32_t i = 0; i < a.Length(); i++) {
    if (!a.Get(i).IsObject()) throw Napi::TypeError::New(env, "each rule must be an object");
    Napi::Object o = a.Get(i).As<Napi::Object>();
    if (!o.Get("step").IsString()) throw Napi::TypeError::New(env, "rule.step must be a string");
    std::string step = o.Get("step").As<Napi::String>().Utf8Value();
    if (step.empty() || step.size() >= IMGMOUNT_FAULT_STEP_MAX)
      throw Napi::RangeError::New(env, "rule.step must be 1 to " + std::to_string(IMGMOUNT_FAULT_STEP_MAX - 1) + " bytes");
    if (!o.Get("errno").IsNumber()) throw Napi::TypeError::New(env, "rule.errno must be a number");
    int err = o.Get("errno").As<Napi::Number>().Int32Value();
    if (!imgmount_fault_errno_allowed(err))
      throw Napi::RangeError::New(env, "rule.errno " + std::to_string(err) + " may not be injected (EBUSY, EAGAIN, ENOSPC, ENOMEM or EIO)");
    memcpy(rules[i].step, step.c_str(), step.size() + 1);
    rules[i].err = err;
    rules[i].skip = o.Get("skip").IsUndefined() ? 0 : static_cast<unsigned long>(ArgUint64(o.Get("skip"), "rule.skip"));
    rules[i].times = o.Get("times").IsUndefined() ? 1 : static_cast<unsigned long>(ArgUint64(o.Get("times"), "rule.times"));
  }
  if (imgmount_faults_arm(rules.data(), rules.size()) != 0) throw Napi::Error::New(env, "injectFaults: invalid rules");
  return env.Undefined();
}

// faultHits() -> { [step]: hits } since injectFaults() armed; {} when disarmed.
static Napi::Value FaultHits(const Napi::CallbackInfo& info) {
  // Collected first: nothing may throw through the C code's frames.
  std::vector<std::pair<std::string, unsigned long>> hits;
  imgmount_fault_hits(
      [](void* ctx, const char* step, unsigned long n) {
        try {
          static_cast<std::vector<std::pair<std::string, unsigned long>>*>(ctx)->emplace_back(step, n);
        } catch (...) {
        }
      },
      &hits);
  Napi::Object out = Napi::Object::New(info.Env());
  for (const auto& h : hits) out.Set(h.first, Napi::Number::New(info.Env(), static_cast<double>(h.second)));
  return out;
}

static Napi::Object Init(Napi::Env env, Napi::Object exports) {
  env.SetInstanceData<Addon>(new Addon());
  InitWorkPool(env);
  exports.Set("initialize", Napi::Function::New(env, Initialize, "initialize"));
  exports.Set("abiVersion", Napi::Number::New(env, 1));
  exports.Set("injectFaults", Napi::Function::New(env, InjectFaults, "injectFaults"));
  exports.Set("faultHits", Napi::Function::New(env, FaultHits, "faultHits"));
  InitFiles(env, exports);
  InitImage(env, exports);
  InitLock(env, exports);
  InitLoop(env, exports);
  InitMount(env, exports);
  InitAttachMount(env, exports);
  InitMountinfoWatch(env, exports);
  InitSpawn(env, exports);
  InitNamespace(env, exports);
  InitPath(env, exports);
  InitUsers(env, exports);
  InitCredentials(env, exports);
  return exports;
}

}  // namespace imgmount

static Napi::Object InitAddon(Napi::Env env, Napi::Object exports) { return imgmount::Init(env, exports); }

NODE_API_MODULE(imgmount, InitAddon)
