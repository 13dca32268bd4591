// lunar native addon: module entry and shared argument/error helpers.
#include <cerrno>
#include <cmath>
#include <cstring>
#include <string>

#include "lunar.h"

namespace lunar {

Napi::Error CodedError(Napi::Env env, const char* code, const std::string& message) {
  Napi::Error e = Napi::Error::New(env, message);
  e.Set("code", Napi::String::New(env, code));
  return e;
}

Napi::Error CodedTypeError(Napi::Env env, const char* code, const std::string& message) {
  Napi::Error e = Napi::TypeError::New(env, message);
  e.Set("code", Napi::String::New(env, code));
  return e;
}

const char* ErrnoName(int err) {
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 32))
  const char* n = strerrorname_np(err);
  if (n != nullptr) return n;
#else
  switch (err) {
    case ENOENT: return "ENOENT";
    case EACCES: return "EACCES";
    case EPERM: return "EPERM";
    case EBADF: return "EBADF";
    case EINVAL: return "EINVAL";
    case EIO: return "EIO";
    case ENOSPC: return "ENOSPC";
    case EROFS: return "EROFS";
    case EISDIR: return "EISDIR";
    case EOPNOTSUPP: return "EOPNOTSUPP";
    case EFBIG: return "EFBIG";
    case ENXIO: return "ENXIO";
    default: break;
  }
#endif
  return "EUNKNOWN";
}

Napi::Error ErrnoError(Napi::Env env, int err, const char* syscall, const std::string& path) {
  std::string msg = std::string(ErrnoName(err)) + ": " + std::strerror(err) + ", " + syscall;
  if (!path.empty()) msg += " '" + path + "'";
  Napi::Error e = Napi::Error::New(env, msg);
  e.Set("code", Napi::String::New(env, ErrnoName(err)));
  e.Set("errno", Napi::Number::New(env, -err));
  e.Set("syscall", Napi::String::New(env, syscall));
  if (!path.empty()) e.Set("path", Napi::String::New(env, path));
  return e;
}

View GetView(const Napi::Value& v, const char* what) {
  Napi::Env env = v.Env();
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array)
    throw CodedTypeError(env, "ERR_INVALID_ARG_TYPE", std::string(what) + " must be a Buffer or Uint8Array");
  Napi::Uint8Array a = v.As<Napi::Uint8Array>();
  return View{a.Data(), a.ElementLength()};
}

uint64_t GetOffset(const Napi::Value& v, const char* what) {
  Napi::Env env = v.Env();
  if (!v.IsNumber()) throw CodedTypeError(env, "ERR_INVALID_ARG_TYPE", std::string(what) + " must be a number");
  double d = v.As<Napi::Number>().DoubleValue();
  if (!std::isfinite(d) || d < 0 || d > 9007199254740991.0 || std::floor(d) != d)
    throw CodedError(env, "ERR_OUT_OF_RANGE",
                     std::string(what) + " must be a non-negative safe integer (got " + std::to_string(d) + ")");
  return static_cast<uint64_t>(d);
}

}  // namespace lunar

static Napi::Object LunarInit(Napi::Env env, Napi::Object exports) {
  lunar::InitCrc32c(env, exports);
  lunar::InitPool(env, exports);
  lunar::InitFile(env, exports);
  exports.Set("abiVersion", Napi::Number::New(env, 2));
  return exports;
}

NODE_API_MODULE(lunar_native, LunarInit)
