// bfloat16 and float16 storage types with IEEE round-to-nearest-even conversions (NaN, inf and
// subnormals handled). Layout-compatible with CUDA's __nv_bfloat16 / __half.
#pragma once
#include <cstdint>
#include <cstring>

namespace loom {

inline uint32_t float_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}
inline float bits_float(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

/// double -> float rounded to odd (inexact results get their last mantissa bit set). Rounding
/// that float once more to bfloat16 or float16 (which keep at least 2 bits fewer) then equals
/// rounding the double directly: plain RNE twice would round ties made by the first rounding.
inline float round_to_odd_float(double d) {
  float f = static_cast<float>(d);
  if (static_cast<double>(f) == d || d != d) return f;
  uint32_t u = float_bits(f);
  if (static_cast<double>(f < 0 ? -f : f) > (d < 0 ? -d : d)) --u;  // step back toward zero
  return bits_float(u | 1u);
}

struct bfloat16 {
  uint16_t bits = 0;
  bfloat16() = default;
  explicit bfloat16(float f) : bits(from_float(f)) {}
  explicit operator float() const { return bits_float(uint32_t(bits) << 16); }
  static bfloat16 from_bits(uint16_t b) {
    bfloat16 h;
    h.bits = b;
    return h;
  }
  static uint16_t from_float(float f) {
    uint32_t u = float_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return uint16_t((u >> 16) | 0x40);  // quiet NaN, keep sign
    uint32_t rounding = 0x7fffu + ((u >> 16) & 1u);  // round to nearest, ties to even
    return uint16_t((u + rounding) >> 16);
  }
};

struct float16 {
  uint16_t bits = 0;
  float16() = default;
  explicit float16(float f) : bits(from_float(f)) {}
  explicit operator float() const { return to_float(bits); }
  static float16 from_bits(uint16_t b) {
    float16 h;
    h.bits = b;
    return h;
  }
  static uint16_t from_float(float f) {
    uint32_t u = float_bits(f);
    uint32_t sign = (u >> 16) & 0x8000u;
    uint32_t abs = u & 0x7fffffffu;
    if (abs > 0x7f800000u) return uint16_t(sign | 0x7e00u);   // NaN
    if (abs >= 0x477ff000u) return uint16_t(sign | 0x7c00u);  // rounds to >= 65520 -> inf
    if (abs < 0x38800000u) {                                   // result is subnormal (or zero)
      // value = abs_float; subnormal unit is 2^-24. Round abs_float / 2^-24 to nearest even.
      float scaled = bits_float(abs) * 16777216.0f;  // exact: multiplies by a power of two
      uint32_t q = uint32_t(scaled);
      float rem = scaled - float(q);
      if (rem > 0.5f || (rem == 0.5f && (q & 1u))) ++q;
      return uint16_t(sign | q);
    }
    // normal: rebias exponent 127 -> 15 and round the 13 dropped mantissa bits to nearest even
    uint32_t rounding = 0xfffu + ((abs >> 13) & 1u);
    return uint16_t(sign | ((abs - 0x38000000u + rounding) >> 13));
  }
  static float to_float(uint16_t h) {
    uint32_t sign = uint32_t(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t man = h & 0x3ffu;
    if (exp == 0x1f) return bits_float(sign | 0x7f800000u | (man << 13));  // inf / NaN
    if (exp == 0) {
      float mag = float(man) * (1.0f / 16777216.0f);  // man * 2^-24, exact
      return sign ? -mag : mag;
    }
    return bits_float(sign | ((exp + 112u) << 23) | (man << 13));
  }
};

}  // namespace loom
