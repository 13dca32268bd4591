// CRC32C (Castagnoli): SSE4.2 crc32 instruction with three interleaved streams, chosen at run time,
// and a slice-by-8 table path for other CPUs. The streams are joined by a GF(2) "shift" operator:
// for a fixed stream length L, appending L zero bytes to a CRC state is a linear map on 32 bits,
// precomputed as four 256-entry tables (one per state byte).
#include <cstring>
#include <mutex>

#include "lunar.h"

#if defined(__x86_64__) || defined(__i386__)
#define LUNAR_X86 1
#include <nmmintrin.h>
#endif

namespace lunar {
namespace {

constexpr uint32_t kPoly = 0x82F63B78u;  // reflected Castagnoli polynomial

uint32_t g_table[8][256];

struct ShiftOp {
  uint32_t t[4][256];
};

// Stream lengths for the 3-way interleave, longest first; each is a multiple of 8.
constexpr size_t kLong = 8192, kMid = 1024, kShort = 128;
ShiftOp g_shift_long, g_shift_mid, g_shift_short;

void BuildShift(ShiftOp& op, size_t zero_bytes) {
  uint32_t column[32];
  for (int j = 0; j < 32; j++) {
    uint32_t c = 1u << j;
    for (size_t i = 0; i < zero_bytes; i++) c = (c >> 8) ^ g_table[0][c & 0xFF];
    column[j] = c;
  }
  for (int k = 0; k < 4; k++) {
    for (uint32_t v = 0; v < 256; v++) {
      uint32_t x = 0;
      for (int b = 0; b < 8; b++)
        if ((v >> b) & 1) x ^= column[8 * k + b];
      op.t[k][v] = x;
    }
  }
}

inline uint32_t Shift(const ShiftOp& op, uint32_t c) {
  return op.t[0][c & 0xFF] ^ op.t[1][(c >> 8) & 0xFF] ^ op.t[2][(c >> 16) & 0xFF] ^ op.t[3][c >> 24];
}

inline uint64_t Load64(const uint8_t* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);
  return v;
}

inline uint32_t Load32(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

uint32_t TableUpdate(uint32_t crc, const uint8_t* p, size_t n) {
  while (n >= 8) {
    uint32_t lo = crc ^ Load32(p);  // little-endian hosts only for the word path
    crc = g_table[7][lo & 0xFF] ^ g_table[6][(lo >> 8) & 0xFF] ^ g_table[5][(lo >> 16) & 0xFF] ^
          g_table[4][lo >> 24] ^ g_table[3][p[4]] ^ g_table[2][p[5]] ^ g_table[1][p[6]] ^ g_table[0][p[7]];
    p += 8;
    n -= 8;
  }
  while (n--) crc = (crc >> 8) ^ g_table[0][(crc ^ *p++) & 0xFF];
  return crc;
}

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
uint32_t TableUpdatePortable(uint32_t crc, const uint8_t* p, size_t n) {
  while (n--) crc = (crc >> 8) ^ g_table[0][(crc ^ *p++) & 0xFF];
  return crc;
}
#endif

#ifdef LUNAR_X86
__attribute__((target("sse4.2"))) inline uint64_t Hw3Way(uint64_t c0, const uint8_t* p, size_t len,
                                                         const ShiftOp& op) {
  // Three independent dependency chains hide the instruction's 3-cycle latency.
  uint64_t c1 = 0, c2 = 0;
  const uint8_t* p1 = p + len;
  const uint8_t* p2 = p + 2 * len;
  for (size_t i = 0; i < len; i += 8) {
    c0 = _mm_crc32_u64(c0, Load64(p + i));
    c1 = _mm_crc32_u64(c1, Load64(p1 + i));
    c2 = _mm_crc32_u64(c2, Load64(p2 + i));
  }
  uint32_t c = Shift(op, static_cast<uint32_t>(c0)) ^ static_cast<uint32_t>(c1);
  c = Shift(op, c) ^ static_cast<uint32_t>(c2);
  return c;
}

__attribute__((target("sse4.2"))) uint32_t HwUpdate(uint32_t crc, const uint8_t* p, size_t n) {
  uint64_t c = crc;
  while (n > 0 && (reinterpret_cast<uintptr_t>(p) & 7) != 0) {
    c = _mm_crc32_u8(static_cast<uint32_t>(c), *p++);
    n--;
  }
  while (n >= 3 * kLong) {
    c = Hw3Way(c, p, kLong, g_shift_long);
    p += 3 * kLong;
    n -= 3 * kLong;
  }
  while (n >= 3 * kMid) {
    c = Hw3Way(c, p, kMid, g_shift_mid);
    p += 3 * kMid;
    n -= 3 * kMid;
  }
  while (n >= 3 * kShort) {
    c = Hw3Way(c, p, kShort, g_shift_short);
    p += 3 * kShort;
    n -= 3 * kShort;
  }
  while (n >= 8) {
    c = _mm_crc32_u64(c, Load64(p));
    p += 8;
    n -= 8;
  }
  uint32_t c32 = static_cast<uint32_t>(c);
  while (n--) c32 = _mm_crc32_u8(c32, *p++);
  return c32;
}
#endif

using UpdateFn = uint32_t (*)(uint32_t, const uint8_t*, size_t);
UpdateFn g_update = nullptr;
bool g_hw = false;
std::once_flag g_once;

void InitOnce() {
  for (uint32_t b = 0; b < 256; b++) {
    uint32_t c = b;
    for (int k = 0; k < 8; k++) c = (c & 1) ? (c >> 1) ^ kPoly : c >> 1;
    g_table[0][b] = c;
  }
  for (uint32_t b = 0; b < 256; b++) {
    uint32_t c = g_table[0][b];
    for (int k = 1; k < 8; k++) {
      c = (c >> 8) ^ g_table[0][c & 0xFF];
      g_table[k][b] = c;
    }
  }
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
  g_update = TableUpdatePortable;
#else
  g_update = TableUpdate;
#endif
#ifdef LUNAR_X86
  __builtin_cpu_init();
  if (__builtin_cpu_supports("sse4.2")) {
    BuildShift(g_shift_long, kLong);
    BuildShift(g_shift_mid, kMid);
    BuildShift(g_shift_short, kShort);
    g_update = HwUpdate;
    g_hw = true;
  }
#endif
}

Napi::Value JsCrc32c(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  View v = GetView(info[0], "data");
  uint32_t seed = 0;
  if (info.Length() > 1 && !info[1].IsUndefined()) {
    if (!info[1].IsNumber()) throw CodedTypeError(env, "ERR_INVALID_ARG_TYPE", "seed must be a number");
    double d = info[1].As<Napi::Number>().DoubleValue();
    if (!(d >= 0 && d <= 4294967295.0) || d != static_cast<double>(static_cast<uint32_t>(d)))
      throw CodedError(env, "ERR_OUT_OF_RANGE", "seed must be an unsigned 32-bit integer");
    seed = static_cast<uint32_t>(d);
  }
  uint32_t r = ~g_update(~seed, v.data, v.length);
  return Napi::Number::New(env, r);
}

Napi::Value JsCrc32cTable(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  View v = GetView(info[0], "data");
  uint32_t seed = 0;
  if (info.Length() > 1 && info[1].IsNumber()) seed = info[1].As<Napi::Number>().Uint32Value();
  return Napi::Number::New(env, ~Crc32cUpdateTable(~seed, v.data, v.length));
}

}  // namespace

uint32_t Crc32cUpdate(uint32_t state, const uint8_t* p, size_t n) {
  std::call_once(g_once, InitOnce);
  return g_update(state, p, n);
}

uint32_t Crc32cUpdateTable(uint32_t state, const uint8_t* p, size_t n) {
  std::call_once(g_once, InitOnce);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
  return TableUpdatePortable(state, p, n);
#else
  return TableUpdate(state, p, n);
#endif
}

bool Crc32cHardware() {
  std::call_once(g_once, InitOnce);
  return g_hw;
}

void InitCrc32c(Napi::Env env, Napi::Object exports) {
  std::call_once(g_once, InitOnce);
  exports.Set("crc32c", Napi::Function::New(env, JsCrc32c, "crc32c"));
  exports.Set("crc32cTable", Napi::Function::New(env, JsCrc32cTable, "crc32cTable"));
  exports.Set("crc32cHardware", Napi::Boolean::New(env, g_hw));
}

}  // namespace lunar
