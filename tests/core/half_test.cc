// bfloat16 / float16 conversions: IEEE round-to-nearest-even, NaN, infinities, subnormals.
#include "core/half.h"

#include "core/dtype.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <limits>

namespace loom {
namespace {

std::string hex(uint32_t v) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "0x%04x", v);
  return buf;
}

uint16_t bf(float f) { return bfloat16(f).bits; }
uint16_t h(float f) { return float16(f).bits; }
float f16_value(uint16_t b) { return static_cast<float>(float16::from_bits(b)); }
float bf16_value(uint16_t b) { return static_cast<float>(bfloat16::from_bits(b)); }

// Independent reference for a finite f16 bit pattern's value.
double f16_reference(uint16_t b) {
  int e = (b >> 10) & 0x1f, m = b & 0x3ff;
  double mag = e == 0 ? std::ldexp(double(m), -24) : std::ldexp(double(1024 + m), e - 25);
  return (b & 0x8000) ? -mag : mag;
}

TEST(BFloat16, SimpleValues) {
  EXPECT_EQ(bf(0.0f), 0x0000);
  EXPECT_EQ(bf(-0.0f), 0x8000);
  EXPECT_EQ(bf(1.0f), 0x3f80);
  EXPECT_EQ(bf(-2.0f), 0xc000);
  EXPECT_EQ(bf(3.0f), 0x4040);
  EXPECT_EQ(bf(0.1f), 0x3dcd);  // 0x3dcccccd rounds up
  EXPECT_EQ(bf16_value(0x3f80), 1.0f);
  EXPECT_EQ(bf16_value(0x3dcd), bits_float(0x3dcd0000));
}

TEST(BFloat16, RoundsToNearestEvenIncludingTies) {
  EXPECT_EQ(bf(bits_float(0x3f808000)), 0x3f80);  // tie, 0x3f80 is even
  EXPECT_EQ(bf(bits_float(0x3f818000)), 0x3f82);  // tie, rounds up to even
  EXPECT_EQ(bf(bits_float(0x3f808001)), 0x3f81);  // just above the tie
  EXPECT_EQ(bf(bits_float(0x3f807fff)), 0x3f80);  // just below
  EXPECT_EQ(bf(bits_float(0xbf818000)), 0xbf82);  // negative tie
  EXPECT_EQ(bf(bits_float(0x3f7fffff)), 0x3f80);  // carries into the exponent
}

TEST(BFloat16, NanInfAndOverflow) {
  float inf = std::numeric_limits<float>::infinity();
  EXPECT_EQ(bf(inf), 0x7f80);
  EXPECT_EQ(bf(-inf), 0xff80);
  EXPECT_EQ(bf(std::numeric_limits<float>::max()), 0x7f80);   // rounds past the largest finite
  EXPECT_EQ(bf(bits_float(0x7f7f7fff)), 0x7f7f);               // largest finite bf16
  EXPECT_EQ(bf(bits_float(0x7f7f8000)), 0x7f80);               // tie at the top: to inf (even)
  EXPECT_EQ(bf(-std::numeric_limits<float>::max()), 0xff80);
  // NaN stays NaN with its sign, even when only low payload bits are set (which truncation
  // would turn into infinity).
  for (uint32_t nan_bits : {0x7fc00000u, 0x7f800001u, 0x7fffffffu, 0x7f80ffffu}) {
    uint16_t pos = bf(bits_float(nan_bits)), neg = bf(bits_float(nan_bits | 0x80000000u));
    EXPECT_TRUE(std::isnan(bf16_value(pos))) << hex(nan_bits);
    EXPECT_TRUE(std::isnan(bf16_value(neg))) << hex(nan_bits);
    EXPECT_EQ(pos & 0x8000, 0) << hex(nan_bits);
    EXPECT_EQ(neg & 0x8000, 0x8000) << hex(nan_bits);
  }
  EXPECT_TRUE(std::isinf(bf16_value(0x7f80)));
  EXPECT_LT(bf16_value(0xff80), 0.0f);
}

TEST(BFloat16, Subnormals) {
  EXPECT_EQ(bf(bits_float(0x00010000)), 0x0001);  // smallest bf16 subnormal, exact
  EXPECT_EQ(bf16_value(0x0001), bits_float(0x00010000));
  EXPECT_EQ(bf(bits_float(0x00008000)), 0x0000);  // tie between 0 and the smallest: to 0
  EXPECT_EQ(bf(bits_float(0x00008001)), 0x0001);
  EXPECT_EQ(bf(bits_float(0x00018000)), 0x0002);  // tie between 1 and 2: to 2
  EXPECT_EQ(bf(bits_float(0x80008000)), 0x8000);  // negative tie to -0
  EXPECT_EQ(bf(bits_float(0x007fffff)), 0x0080);  // largest float subnormal rounds to min normal
  EXPECT_EQ(bf(std::numeric_limits<float>::denorm_min()), 0x0000);
}

// For every pair of adjacent bf16 values the midpoint is exactly representable as a float: the
// tie goes to the even pattern, and the floats just either side go to the nearer value.
TEST(BFloat16, EveryIntervalRoundsCorrectly) {
  for (uint32_t sign : {0u, 0x8000u}) {
    for (uint32_t a = 0; a < 0x7f80; ++a) {
      uint32_t mid = ((sign | a) << 16) | 0x8000u;
      uint16_t lo = uint16_t(sign | a), hi = uint16_t(sign | (a + 1));
      ASSERT_EQ(bf(bits_float(mid)), (a & 1) ? hi : lo) << "tie after " << hex(lo);
      ASSERT_EQ(bf(bits_float(mid - 1)), lo) << hex(lo);
      ASSERT_EQ(bf(bits_float(mid + 1)), hi) << hex(lo);
      ASSERT_EQ(bf(bits_float((sign | a) << 16)), lo) << hex(lo);
    }
  }
}

TEST(BFloat16, EveryBitPatternRoundTripsThroughFloat) {
  for (uint32_t b = 0; b < 0x10000; ++b) {
    float f = bf16_value(uint16_t(b));
    ASSERT_EQ(float_bits(f), b << 16) << hex(b);  // widening is exact
    uint16_t back = bf(f);
    if (std::isnan(f)) {
      ASSERT_TRUE(std::isnan(bf16_value(back))) << hex(b);
      ASSERT_EQ(back & 0x8000, b & 0x8000) << hex(b);
    } else {
      ASSERT_EQ(back, b) << hex(b);
    }
  }
}

TEST(Float16, SimpleValues) {
  EXPECT_EQ(h(0.0f), 0x0000);
  EXPECT_EQ(h(-0.0f), 0x8000);
  EXPECT_EQ(h(1.0f), 0x3c00);
  EXPECT_EQ(h(-2.0f), 0xc000);
  EXPECT_EQ(h(0.5f), 0x3800);
  EXPECT_EQ(h(0.1f), 0x2e66);
  EXPECT_EQ(h(1000.0f), 0x63d0);
  EXPECT_EQ(f16_value(0x3c00), 1.0f);
  EXPECT_EQ(f16_value(0x2e66), 0.0999755859375f);
}

TEST(Float16, RoundsToNearestEvenIncludingTies) {
  EXPECT_EQ(h(1.0f + std::ldexp(1.0f, -11)), 0x3c00);      // tie, 0x3c00 is even
  EXPECT_EQ(h(1.0f + 3 * std::ldexp(1.0f, -11)), 0x3c02);  // tie, 0x3c01 is odd: up
  EXPECT_EQ(h(1.0f + std::ldexp(1.0f, -11) + std::ldexp(1.0f, -20)), 0x3c01);
  EXPECT_EQ(h(1.0f + std::ldexp(1.0f, -11) - std::ldexp(1.0f, -20)), 0x3c00);
  EXPECT_EQ(h(2049.0f), 0x6800);  // tie between 2048 and 2050: 2048
  EXPECT_EQ(h(2051.0f), 0x6802);  // tie between 2050 and 2052: 2052
  EXPECT_EQ(h(-2051.0f), 0xe802);
  EXPECT_EQ(h(2047.9999f), 0x6800);  // carries into the exponent
}

TEST(Float16, OverflowNanAndInfinity) {
  float inf = std::numeric_limits<float>::infinity();
  EXPECT_EQ(h(65504.0f), 0x7bff);  // largest finite
  EXPECT_EQ(f16_value(0x7bff), 65504.0f);
  EXPECT_EQ(h(65519.0f), 0x7bff);
  EXPECT_EQ(h(std::nextafter(65520.0f, 0.0f)), 0x7bff);
  EXPECT_EQ(h(65520.0f), 0x7c00);  // the tie at the top rounds to infinity
  EXPECT_EQ(h(-65520.0f), 0xfc00);
  EXPECT_EQ(h(65536.0f), 0x7c00);
  EXPECT_EQ(h(1e10f), 0x7c00);
  EXPECT_EQ(h(std::numeric_limits<float>::max()), 0x7c00);
  EXPECT_EQ(h(inf), 0x7c00);
  EXPECT_EQ(h(-inf), 0xfc00);
  EXPECT_TRUE(std::isinf(f16_value(0x7c00)));
  EXPECT_EQ(f16_value(0xfc00), -inf);
  for (uint32_t nan_bits : {0x7fc00000u, 0x7f800001u, 0x7fffffffu, 0x7f801fffu}) {
    uint16_t pos = h(bits_float(nan_bits)), neg = h(bits_float(nan_bits | 0x80000000u));
    EXPECT_TRUE(std::isnan(f16_value(pos))) << hex(nan_bits);
    EXPECT_TRUE(std::isnan(f16_value(neg))) << hex(nan_bits);
    EXPECT_EQ(pos & 0x8000, 0) << hex(nan_bits);
    EXPECT_EQ(neg & 0x8000, 0x8000) << hex(nan_bits);
  }
  EXPECT_TRUE(std::isnan(f16_value(0x7c01)));  // signalling NaN pattern widens to a NaN
  EXPECT_TRUE(std::signbit(f16_value(0xfe00)));
}

TEST(Float16, Subnormals) {
  const float tiny = std::ldexp(1.0f, -24);  // smallest f16 subnormal
  EXPECT_EQ(h(tiny), 0x0001);
  EXPECT_EQ(f16_value(0x0001), tiny);
  EXPECT_EQ(h(-tiny), 0x8001);
  EXPECT_EQ(h(std::ldexp(1.0f, -25)), 0x0000);  // tie between 0 and 2^-24: to zero
  EXPECT_EQ(h(-std::ldexp(1.0f, -25)), 0x8000);
  EXPECT_EQ(h(std::nextafter(std::ldexp(1.0f, -25), 1.0f)), 0x0001);  // just above: up
  EXPECT_EQ(h(std::ldexp(1.0f, -26)), 0x0000);  // below half the smallest: zero
  EXPECT_EQ(h(std::ldexp(3.0f, -25)), 0x0002);  // tie between 1 and 2 units: to 2
  EXPECT_EQ(h(std::ldexp(5.0f, -25)), 0x0002);  // tie between 2 and 3 units: to 2
  EXPECT_EQ(h(std::ldexp(1023.0f, -24)), 0x03ff);  // largest subnormal
  EXPECT_EQ(f16_value(0x03ff), std::ldexp(1023.0f, -24));
  EXPECT_EQ(h(std::ldexp(1023.5f, -24)), 0x0400);  // tie into the smallest normal (even)
  EXPECT_EQ(h(std::ldexp(1.0f, -14)), 0x0400);     // smallest normal
  EXPECT_EQ(h(std::numeric_limits<float>::denorm_min()), 0x0000);
  EXPECT_EQ(h(std::numeric_limits<float>::min()), 0x0000);
}

// Adjacent f16 values have a float-representable midpoint: ties to even, neighbours to nearest.
// The pattern after the largest finite one is infinity, reached from 65520 upwards.
TEST(Float16, EveryIntervalRoundsCorrectly) {
  for (uint32_t sign : {0u, 0x8000u}) {
    for (uint32_t a = 0; a < 0x7c00; ++a) {
      uint16_t lo = uint16_t(sign | a), hi = uint16_t(sign | (a + 1));
      double vlo = f16_reference(lo);
      double vhi = a + 1 == 0x7c00 ? (sign ? -65536.0 : 65536.0) : f16_reference(hi);
      float mid = float((vlo + vhi) / 2);
      ASSERT_EQ(double(mid), (vlo + vhi) / 2);
      ASSERT_EQ(h(mid), (a & 1) ? hi : lo) << "tie after " << hex(lo);
      ASSERT_EQ(h(std::nextafter(mid, float(vlo))), lo) << hex(lo);
      ASSERT_EQ(h(std::nextafter(mid, float(vhi))), hi) << hex(lo);
      ASSERT_EQ(h(float(vlo)), lo) << hex(lo);
    }
  }
}

TEST(Float16, EveryBitPatternRoundTripsThroughFloat) {
  for (uint32_t b = 0; b < 0x10000; ++b) {
    float f = f16_value(uint16_t(b));
    uint16_t back = h(f);
    if ((b & 0x7c00) == 0x7c00 && (b & 0x3ff)) {  // NaN
      ASSERT_TRUE(std::isnan(f)) << hex(b);
      ASSERT_EQ(std::signbit(f), bool(b & 0x8000)) << hex(b);
      ASSERT_TRUE(std::isnan(f16_value(back))) << hex(b);
      ASSERT_EQ(back & 0x8000, b & 0x8000) << hex(b);
    } else {
      if ((b & 0x7c00) != 0x7c00) {
        ASSERT_EQ(double(f), f16_reference(uint16_t(b))) << hex(b);
      }
      ASSERT_EQ(back, b) << hex(b);
    }
  }
}

// A double just above a bfloat16/float16 tie rounds to a float exactly on the tie: converting
// through float with plain round-to-nearest-even twice would go down to the even neighbour. The
// casts round once (through round_to_odd_float), as numpy and JAX do.
TEST(HalfFromDouble, RoundsOnceNotTwice) {
  const double above_bf16_tie = 1.0 + std::ldexp(1.0, -8) + std::ldexp(1.0, -30);
  EXPECT_EQ(static_cast<float>(static_cast<float>(above_bf16_tie)), 1.0f + std::ldexp(1.0f, -8));
  EXPECT_EQ(float(convert<bfloat16>(above_bf16_tie)), 1.0f + std::ldexp(1.0f, -7));
  EXPECT_EQ(float(convert<bfloat16>(-above_bf16_tie)), -1.0f - std::ldexp(1.0f, -7));
  const double below_bf16_tie = 1.0 + std::ldexp(1.0, -8) - std::ldexp(1.0, -30);
  EXPECT_EQ(float(convert<bfloat16>(below_bf16_tie)), 1.0f);
  EXPECT_EQ(float(convert<bfloat16>(1.0 + std::ldexp(1.0, -8))), 1.0f);  // an exact tie: to even
  const double above_f16_tie = 1.0 + std::ldexp(1.0, -11) + std::ldexp(1.0, -40);
  EXPECT_EQ(float(convert<float16>(above_f16_tie)), 1.0f + std::ldexp(1.0f, -10));
  // int32 values above 2^24 are rounded once too.
  const int32_t big = (1 << 24) + (1 << 16) + 1;  // just above the bf16 tie at 2^24 + 2^16
  EXPECT_EQ(float(convert<bfloat16>(big)), float((1 << 24) + (1 << 17)));
  // Exact values, overflow, NaN and tiny values keep their meaning.
  EXPECT_EQ(float(convert<bfloat16>(0.15625)), 0.15625f);
  EXPECT_TRUE(std::isinf(float(convert<bfloat16>(1e300))));
  EXPECT_TRUE(std::isinf(float(convert<float16>(-1e300))));
  EXPECT_TRUE(std::isnan(float(convert<float16>(std::nan("")))));
  EXPECT_EQ(convert<float16>(-1e-300).bits, 0x8000u);  // rounds to -0
  EXPECT_EQ(round_to_odd_float(1e-300), std::numeric_limits<float>::denorm_min());
}

}  // namespace
}  // namespace loom
