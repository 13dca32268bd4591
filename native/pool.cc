// Pool of 4096-byte-aligned memory blocks handed to JS as Buffers. Blocks come in size classes
// (powers of two and 1.5 × powers of two from 4 KiB to 16 MiB); a Buffer's finalizer returns its
// block to the class freelist, bounded by a cap on idle bytes (default 32 MiB) so that an idle
// process does not keep its peak. Larger requests bypass the pool. Live bytes are reported to V8
// (AdjustExternalMemory) so the GC sees the pressure and runs finalizers in time.
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <vector>

#include "lunar.h"

namespace lunar {
namespace {

constexpr size_t kMinClass = 4096;
constexpr size_t kMaxClass = 16u << 20;

struct Pool {
  std::mutex mu;
  std::vector<size_t> class_size;           // ascending
  std::vector<std::vector<void*>> free;     // per class
  size_t idle_bytes = 0;
  size_t idle_cap = 32u << 20;
  // Statistics (under mu).
  uint64_t live_bytes = 0, live_buffers = 0, hits = 0, misses = 0, releases = 0, frees = 0;
  uint64_t oversize_live = 0;

  Pool() {
    for (size_t s = kMinClass; s <= kMaxClass; s <<= 1) {
      class_size.push_back(s);
      if (s + s / 2 <= kMaxClass && s >= 8192) class_size.push_back(s + s / 2);
    }
    free.resize(class_size.size());
  }

  // Index of the smallest class ≥ size, or -1 when the request is larger than every class.
  int ClassOf(size_t size) const {
    size_t lo = 0, hi = class_size.size();
    while (lo < hi) {
      size_t mid = (lo + hi) / 2;
      if (class_size[mid] < size) lo = mid + 1;
      else hi = mid;
    }
    return lo < class_size.size() ? static_cast<int>(lo) : -1;
  }
};

Pool& ThePool() {
  static Pool* pool = new Pool();  // never destroyed: finalizers may run during teardown
  return *pool;
}

void* RawAlloc(size_t bytes) {
  void* p = nullptr;
  if (posix_memalign(&p, kPoolAlign, bytes) != 0) return nullptr;
  return p;
}

// Hint passed to the finalizer: the class index + 1 (0 = oversize, freed directly) and the byte
// count accounted to V8, packed in a heap cell.
struct Hint {
  int cls;
  size_t bytes;
};

void Finalize(Napi::Env env, uint8_t* data, Hint* hint) {
  Pool& pool = ThePool();
  size_t bytes = hint->bytes;
  int cls = hint->cls;
  delete hint;
  bool keep = false;
  {
    std::lock_guard<std::mutex> lock(pool.mu);
    pool.live_bytes -= bytes;
    pool.live_buffers--;
    if (cls < 0) pool.oversize_live--;
    if (cls >= 0 && pool.idle_bytes + bytes <= pool.idle_cap) {
      pool.free[cls].push_back(data);
      pool.idle_bytes += bytes;
      pool.releases++;
      keep = true;
    } else {
      pool.frees++;
    }
  }
  if (!keep) std::free(data);
  Napi::MemoryManagement::AdjustExternalMemory(env, -static_cast<int64_t>(bytes));
}

Napi::Value JsAllocAligned(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uint64_t size = GetOffset(info[0], "size");
  bool zero = true;
  if (info.Length() > 1 && !info[1].IsUndefined()) {
    if (!info[1].IsBoolean()) throw CodedTypeError(env, "ERR_INVALID_ARG_TYPE", "zero must be a boolean");
    zero = info[1].As<Napi::Boolean>().Value();
  }
  // Node's own Buffer limit (kMaxLength) is 2^32 on 64-bit Node 20; stay well inside it.
  if (size > (uint64_t{1} << 32))
    throw CodedError(env, "ERR_OUT_OF_RANGE", "allocAligned: size " + std::to_string(size) + " exceeds 4 GiB");
  return AllocAligned(env, static_cast<size_t>(size), zero);
}

Napi::Value JsPoolStats(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Pool& pool = ThePool();
  Napi::Object o = Napi::Object::New(env);
  std::lock_guard<std::mutex> lock(pool.mu);
  o.Set("liveBytes", Napi::Number::New(env, static_cast<double>(pool.live_bytes)));
  o.Set("liveBuffers", Napi::Number::New(env, static_cast<double>(pool.live_buffers)));
  o.Set("idleBytes", Napi::Number::New(env, static_cast<double>(pool.idle_bytes)));
  o.Set("idleCap", Napi::Number::New(env, static_cast<double>(pool.idle_cap)));
  o.Set("hits", Napi::Number::New(env, static_cast<double>(pool.hits)));
  o.Set("misses", Napi::Number::New(env, static_cast<double>(pool.misses)));
  o.Set("releases", Napi::Number::New(env, static_cast<double>(pool.releases)));
  o.Set("frees", Napi::Number::New(env, static_cast<double>(pool.frees)));
  return o;
}

// isAligned(view, alignment): whether the view's first byte sits at a multiple of `alignment`.
Napi::Value JsIsAligned(const Napi::CallbackInfo& info) {
  View v = GetView(info[0], "buffer");
  uint64_t a = GetOffset(info[1], "alignment");
  if (a == 0 || (a & (a - 1)) != 0)
    throw CodedError(info.Env(), "ERR_OUT_OF_RANGE", "alignment must be a power of two");
  return Napi::Boolean::New(info.Env(), (reinterpret_cast<uintptr_t>(v.data) & (a - 1)) == 0);
}

// setPoolIdleCap(bytes): changes the idle cap and trims the freelists down to it.
Napi::Value JsSetPoolIdleCap(const Napi::CallbackInfo& info) {
  uint64_t cap = GetOffset(info[0], "bytes");
  Pool& pool = ThePool();
  std::vector<void*> drop;
  {
    std::lock_guard<std::mutex> lock(pool.mu);
    pool.idle_cap = static_cast<size_t>(cap);
    for (size_t c = pool.class_size.size(); c-- > 0 && pool.idle_bytes > pool.idle_cap;) {
      auto& fl = pool.free[c];
      while (!fl.empty() && pool.idle_bytes > pool.idle_cap) {
        drop.push_back(fl.back());
        fl.pop_back();
        pool.idle_bytes -= pool.class_size[c];
      }
    }
  }
  for (void* p : drop) std::free(p);
  return info.Env().Undefined();
}

}  // namespace

Napi::Buffer<uint8_t> AllocAligned(Napi::Env env, size_t size, bool zero) {
  Pool& pool = ThePool();
  int cls = pool.ClassOf(size == 0 ? 1 : size);
  size_t bytes = cls >= 0 ? pool.class_size[cls] : (size + kPoolAlign - 1) / kPoolAlign * kPoolAlign;
  void* p = nullptr;
  {
    std::lock_guard<std::mutex> lock(pool.mu);
    if (cls >= 0 && !pool.free[cls].empty()) {
      p = pool.free[cls].back();
      pool.free[cls].pop_back();
      pool.idle_bytes -= bytes;
      pool.hits++;
    } else {
      pool.misses++;
    }
  }
  if (p == nullptr) {
    p = RawAlloc(bytes);
    if (p == nullptr) throw CodedError(env, "ENOMEM", "allocAligned: out of memory for " + std::to_string(size) + " bytes");
  }
  if (zero) std::memset(p, 0, size);
  {
    std::lock_guard<std::mutex> lock(pool.mu);
    pool.live_bytes += bytes;
    pool.live_buffers++;
    if (cls < 0) pool.oversize_live++;
  }
  Hint* hint = new Hint{cls, bytes};
  Napi::MemoryManagement::AdjustExternalMemory(env, static_cast<int64_t>(bytes));
  return Napi::Buffer<uint8_t>::New(env, static_cast<uint8_t*>(p), size, Finalize, hint);
}

void InitPool(Napi::Env env, Napi::Object exports) {
  exports.Set("allocAligned", Napi::Function::New(env, JsAllocAligned, "allocAligned"));
  exports.Set("isAligned", Napi::Function::New(env, JsIsAligned, "isAligned"));
  exports.Set("poolStats", Napi::Function::New(env, JsPoolStats, "poolStats"));
  exports.Set("setPoolIdleCap", Napi::Function::New(env, JsSetPoolIdleCap, "setPoolIdleCap"));
  exports.Set("alignment", Napi::Number::New(env, static_cast<double>(kPoolAlign)));
}

}  // namespace lunar
