// lunar native addon: shared declarations.
#pragma once

#include <napi.h>

#include <cstddef>
#include <cstdint>

namespace lunar {

// ---- crc32c.cc ----
// Raw CRC32C state update (no pre/post inversion): state' = update(state, bytes).
uint32_t Crc32cUpdate(uint32_t state, const uint8_t* p, size_t n);
// Portable table (slice-by-8) update, always available.
uint32_t Crc32cUpdateTable(uint32_t state, const uint8_t* p, size_t n);
// True when the SSE4.2 crc32 instruction path was selected at load time.
bool Crc32cHardware();
void InitCrc32c(Napi::Env env, Napi::Object exports);

// ---- pool.cc ----
void InitPool(Napi::Env env, Napi::Object exports);
// Allocates a pooled buffer of `size` bytes aligned to kPoolAlign (throws a JS error on failure).
Napi::Buffer<uint8_t> AllocAligned(Napi::Env env, size_t size, bool zero);
constexpr size_t kPoolAlign = 4096;

// ---- file.cc ----
void InitFile(Napi::Env env, Napi::Object exports);

// ---- errors (addon.cc) ----
// A JS Error with .code = `code` (and a message) — for argument and alignment errors.
Napi::Error CodedError(Napi::Env env, const char* code, const std::string& message);
Napi::Error CodedTypeError(Napi::Env env, const char* code, const std::string& message);
// A JS Error for an OS errno: .code = errno name ('ENOENT'), .errno = -err, .syscall, .path.
Napi::Error ErrnoError(Napi::Env env, int err, const char* syscall, const std::string& path);
const char* ErrnoName(int err);

// Argument helpers: throw a coded TypeError/RangeError on bad input.
// A Uint8Array (or Buffer) view: data pointer and length.
struct View {
  uint8_t* data;
  size_t length;
};
View GetView(const Napi::Value& v, const char* what);
// A non-negative integer that fits exactly in a double (≤ 2^53 - 1).
uint64_t GetOffset(const Napi::Value& v, const char* what);

}  // namespace lunar
