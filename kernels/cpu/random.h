// JAX-exact random numbers on raw buffers: threefry2x32 and the per-element samplers.
//
// Everything per element is a pure function of (key, flat index i): element i uses
// threefry(key; (hi32(i), lo32(i))) as JAX's partitionable threefry does, so the CUDA kernels
// (kernels/cuda/random.cu) include this header and run the very same code. The float math is
// written with explicitly rounded operations (no implicit FMA contraction, own log/log1p), so
// CPU and CUDA produce identical bits.
//
// The float formulas reproduce what XLA's CPU backend computes for jax.random on an x86-64 host
// with FMA (jax 0.10.2): it contracts `f * (maxval - minval) + minval` into one FMA, evaluates
// erf_inv's Horner steps as FMAs, and implements log / log1p with Eigen's/Cephes' polynomials.
// Matching that sequence makes uniform, normal and truncated_normal bit-exact in f32, bf16 and
// f16 on such a host (float64 normal: own log, within a few f64 ulps); JAX on other hardware
// (GPU, CPUs without FMA) differs from that by an ulp or two.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>

#include "core/dtype.h"

// Same definition as kernels/elementwise_math.h (an identical redefinition is allowed).
#ifndef LOOM_HD
#ifdef __CUDACC__
#define LOOM_HD __host__ __device__ __forceinline__
#else
#define LOOM_HD inline __attribute__((always_inline))  // lets a constant op fold its switch
#endif
#endif
#ifdef __CUDACC__
#define LOOM_RNG_UNROLL _Pragma("unroll")
#else
#define LOOM_RNG_UNROLL
#endif

namespace loom::cpu {

// --- raw-buffer samplers (CPU). minval/maxval/a/b/clip_* are already rounded to `dtype`. ------
/// out[i] = a ^ b of threefry(key; (hi32(i), lo32(i))) (jax.random.bits, uint32).
void random_bits(uint32_t k0, uint32_t k1, uint32_t* out, int64_t n);
/// jax.random.uniform for floating `dtype` (F32, F64, BF16, F16).
void random_uniform(uint32_t k0, uint32_t k1, void* out, DType dtype, double minval,
                    double maxval, int64_t n);
/// jax.random.normal for floating `dtype`.
void random_normal(uint32_t k0, uint32_t k1, void* out, DType dtype, int64_t n);
/// jax.random.truncated_normal given a = erf(lower/sqrt2), b = erf(upper/sqrt2) and the clip
/// bounds nextafter(lower, +inf), nextafter(upper, -inf), all in `dtype`.
void random_truncated_normal(uint32_t k0, uint32_t k1, void* out, DType dtype, double a,
                             double b, double clip_lo, double clip_hi, int64_t n);
/// jax.random.bernoulli with a float32 p: out[i] = uniform_f32(i) < p.
void random_bernoulli(uint32_t k0, uint32_t k1, bool* out, float p, int64_t n);
/// random_bernoulli's n draws packed 32 per word: bit j % 32 of words[j / 32].
void random_bernoulli_bits(uint32_t k0, uint32_t k1, uint32_t* words, float p, int64_t n);

namespace rng {

// --- threefry2x32 --------------------------------------------------------------------------
struct Pair {
  uint32_t a, b;
};

LOOM_HD uint32_t rotl32(uint32_t x, int r) { return (x << r) | (x >> (32 - r)); }

/// Threefry-2x32 with 20 rounds (jax/_src/random/threefry2x32.py).
LOOM_HD Pair threefry2x32(uint32_t k0, uint32_t k1, uint32_t x0, uint32_t x1) {
  const uint32_t ks[3] = {k0, k1, k0 ^ k1 ^ 0x1BD11BDAu};
  const int rot[2][4] = {{13, 15, 26, 6}, {17, 29, 16, 24}};
  x0 += ks[0];
  x1 += ks[1];
LOOM_RNG_UNROLL
  for (int i = 0; i < 5; ++i) {
LOOM_RNG_UNROLL
    for (int j = 0; j < 4; ++j) {
      x0 += x1;
      x1 = rotl32(x1, rot[i & 1][j]);
      x1 ^= x0;
    }
    x0 += ks[(i + 1) % 3];
    x1 += ks[(i + 2) % 3] + uint32_t(i + 1);
  }
  return {x0, x1};
}

/// The threefry output for flat element index i (counter (hi32(i), lo32(i))).
LOOM_HD Pair counter_pair(uint32_t k0, uint32_t k1, uint64_t i) {
  return threefry2x32(k0, k1, uint32_t(i >> 32), uint32_t(i));
}

// --- exactly rounded scalar operations (never contracted into FMAs) --------------------------
LOOM_HD float as_float(uint32_t u) {
#ifdef __CUDA_ARCH__
  return __uint_as_float(u);
#else
  float f;
  std::memcpy(&f, &u, 4);
  return f;
#endif
}
LOOM_HD uint32_t as_u32(float f) {
#ifdef __CUDA_ARCH__
  return __float_as_uint(f);
#else
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
#endif
}
LOOM_HD double as_double(uint64_t u) {
#ifdef __CUDA_ARCH__
  return __longlong_as_double(static_cast<long long>(u));
#else
  double d;
  std::memcpy(&d, &u, 8);
  return d;
#endif
}
LOOM_HD uint64_t as_u64(double d) {
#ifdef __CUDA_ARCH__
  return static_cast<uint64_t>(__double_as_longlong(d));
#else
  uint64_t u;
  std::memcpy(&u, &d, 8);
  return u;
#endif
}

// On the host a product goes through a volatile so that no -ffp-contract / -march setting can
// fuse it with a following addition; on the device the _rn intrinsics are never contracted.
LOOM_HD float mul(float a, float b) {
#ifdef __CUDA_ARCH__
  return __fmul_rn(a, b);
#else
  volatile float r = a * b;
  return r;
#endif
}
LOOM_HD double mul(double a, double b) {
#ifdef __CUDA_ARCH__
  return __dmul_rn(a, b);
#else
  volatile double r = a * b;
  return r;
#endif
}
LOOM_HD float add(float a, float b) {
#ifdef __CUDA_ARCH__
  return __fadd_rn(a, b);
#else
  return a + b;
#endif
}
LOOM_HD double add(double a, double b) {
#ifdef __CUDA_ARCH__
  return __dadd_rn(a, b);
#else
  return a + b;
#endif
}
LOOM_HD float sub(float a, float b) {
#ifdef __CUDA_ARCH__
  return __fsub_rn(a, b);
#else
  return a - b;
#endif
}
LOOM_HD double sub(double a, double b) {
#ifdef __CUDA_ARCH__
  return __dsub_rn(a, b);
#else
  return a - b;
#endif
}
LOOM_HD float div(float a, float b) {
#ifdef __CUDA_ARCH__
  return __fdiv_rn(a, b);
#else
  return a / b;
#endif
}
LOOM_HD double div(double a, double b) {
#ifdef __CUDA_ARCH__
  return __ddiv_rn(a, b);
#else
  return a / b;
#endif
}
LOOM_HD float fma(float a, float b, float c) {
#ifdef __CUDA_ARCH__
  return __fmaf_rn(a, b, c);
#else
  return std::fma(a, b, c);
#endif
}
LOOM_HD double fma(double a, double b, double c) {
#ifdef __CUDA_ARCH__
  return __fma_rn(a, b, c);
#else
  return std::fma(a, b, c);
#endif
}
LOOM_HD float sqrt(float a) {
#ifdef __CUDA_ARCH__
  return __fsqrt_rn(a);
#else
  return std::sqrt(a);
#endif
}
LOOM_HD double sqrt(double a) {
#ifdef __CUDA_ARCH__
  return __dsqrt_rn(a);
#else
  return std::sqrt(a);
#endif
}
LOOM_HD float fabs(float a) { return as_float(as_u32(a) & 0x7fffffffu); }
LOOM_HD double fabs(double a) { return as_double(as_u64(a) & 0x7fffffffffffffffull); }
/// lax.max / lax.min as x86 maxps/minps evaluate them (the second operand wins ties and NaNs).
template <typename T>
LOOM_HD T max(T a, T b) {
  return a > b ? a : b;
}
template <typename T>
LOOM_HD T min(T a, T b) {
  return a < b ? a : b;
}

// --- bfloat16 / float16 rounding (round to nearest even, integer-only so host == device) -----
LOOM_HD uint16_t bf16_bits(float f) {
  uint32_t u = as_u32(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return uint16_t((u >> 16) | 0x40u);  // quiet NaN
  return uint16_t((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}
LOOM_HD float bf16_value(uint16_t b) { return as_float(uint32_t(b) << 16); }

LOOM_HD uint16_t f16_bits(float f) {
  uint32_t u = as_u32(f);
  uint32_t sign = (u >> 16) & 0x8000u;
  uint32_t a = u & 0x7fffffffu;
  if (a > 0x7f800000u) return uint16_t(sign | 0x7e00u);   // NaN
  if (a >= 0x477ff000u) return uint16_t(sign | 0x7c00u);  // rounds to >= 65520: inf
  if (a < 0x38800000u) {                                  // f16 subnormal or zero
    if (a < 0x33000000u) return uint16_t(sign);           // below half the smallest subnormal
    uint32_t e = a >> 23, m = (a & 0x7fffffu) | 0x800000u;
    uint32_t shift = 126u - e;  // units of 2^-24
    uint32_t q = m >> shift, rem = m & ((1u << shift) - 1u), half = 1u << (shift - 1u);
    if (rem > half || (rem == half && (q & 1u))) ++q;
    return uint16_t(sign | q);
  }
  return uint16_t(sign | ((a - 0x38000000u + 0xfffu + ((a >> 13) & 1u)) >> 13));
}
LOOM_HD float f16_value(uint16_t h) {
  uint32_t sign = uint32_t(h & 0x8000u) << 16;
  uint32_t e = (h >> 10) & 0x1fu, m = h & 0x3ffu;
  if (e == 0x1f) return as_float(sign | 0x7f800000u | (m << 13));
  if (e == 0) {
    float mag = float(m) * 5.9604644775390625e-8f;  // m * 2^-24, exact
    return sign ? -mag : mag;
  }
  return as_float(sign | ((e + 112u) << 23) | (m << 13));
}

// --- XLA CPU's float32 log / log1p / erf / erf_inv, operation for operation ------------------
/// Eigen's plog_float (Cephes polynomial) as XLA CPU compiles it, FMAs included.
LOOM_HD float log_f32(float y) {
  if (!(y > 0.0f)) return y == 0.0f ? -INFINITY : NAN;
  if (y == INFINITY) return y;
  y = max(y, 1.17549435e-38f);  // FLT_MIN
  uint32_t bits = as_u32(y);
  float e = add(float(int32_t(bits >> 23) - 127), 1.0f);
  float m = as_float((bits & 0x807fffffu) | 0x3f000000u);  // mantissa in [0.5, 1)
  bool below = m < 0x1.6a09e6p-1f;                          // sqrt(0.5)
  float x = add(sub(m, 1.0f), below ? m : 0.0f);
  if (below) e = sub(e, 1.0f);
  float x2 = mul(x, x), x3 = mul(x2, x);
  float y0 = fma(0x1.204376p-4f, x, -0x1.d7a370p-4f);
  float y1 = fma(-0x1.fcba9ep-4f, x, 0x1.23d37ep-3f);
  y0 = fma(y0, x, 0x1.de4a34p-4f);
  y1 = fma(y1, x, -0x1.555ca0p-3f);
  float head = fma(-0.5f, x2, x);
  y1 = fma(y0, x3, y1);
  float y2 = fma(fma(0x1.999d58p-3f, x, -0x1.fffff8p-3f), x, 0x1.555554p-2f);
  y1 = fma(y1, x3, y2);
  float r = fma(y1, x3, mul(e, -0x1.bd0106p-13f));
  return fma(e, 0x1.630000p-1f, add(head, r));
}

/// XLA's log1p: a Cephes rational for |x| < sqrt(2) - 1, else log(1 + x).
LOOM_HD float log1p_f32(float x) {
  if (!(fabs(x) < 0x1.a8279ap-2f)) return log_f32(add(x, 1.0f));
  // XLA keeps these as doubles and rounds them to float, hence float(double) below.
  const double num[7] = {4.5270000862445199635215E-5, 4.9854102823193375972212E-1,
                         6.5787325942061044846969E0,  2.9911919328553073277375E1,
                         6.0949667980987787057556E1,  5.7112963590585538103336E1,
                         2.0039553499201281259648E1};
  const double den[7] = {1.0,
                         1.5062909083469192043167E1,
                         8.3047565967967209469434E1,
                         2.2176239823732856465394E2,
                         3.0909872225312059774938E2,
                         2.1642788614495947685003E2,
                         6.0118660497603843919306E1};
  float p = float(num[0]), q = float(den[0]);
LOOM_RNG_UNROLL
  for (int i = 1; i < 7; ++i) {
    p = fma(p, x, float(num[i]));
    q = fma(q, x, float(den[i]));
  }
  float x2 = mul(x, x);
  float r = mul(mul(x, x2), div(p, q));
  r = fma(-0.5f, x2, r);
  return add(x, r);
}

/// XLA CPU's float32 erf (Eigen's rational approximation; +-1 from erfinv(1 - 2^-23) on).
LOOM_HD float erf_f32(float x) {
  if (x != x) return x;
  if (fabs(x) >= 3.7439211627767994f) return x < 0.0f ? -1.0f : 1.0f;
  float x2 = mul(x, x);
  float p = fma(x2, 0.00022905065861350646f, 0.0034082910107109506f);
  p = fma(p, x2, 0.050955695062380861f);
  p = fma(p, x2, 0.18520832239976145f);
  p = fma(p, x2, 1.128379143519084f);
  p = mul(x, p);
  float q = fma(x2, -1.1791602954361697e-7f, 0.000023547966471313185f);
  q = fma(q, x2, 0.0010179625278914885f);
  q = fma(q, x2, 0.014070470171167667f);
  q = fma(q, x2, 0.11098505178285362f);
  q = fma(q, x2, 0.49746925110067538f);
  q = fma(q, x2, 1.0f);
  return div(p, q);
}

/// XLA's ErfInv32 (Giles' single-precision polynomial) with FMA Horner steps.
LOOM_HD float erfinv_f32(float u) {
  const float lt5[9] = {2.81022636e-08f,  3.43273939e-07f, -3.5233877e-06f,
                        -4.39150654e-06f, 0.00021858087f,  -0.00125372503f,
                        -0.00417768164f,  0.246640727f,    1.50140941f};
  const float ge5[9] = {-0.000200214257f, 0.000100950558f, 0.00134934322f,
                        -0.00367342844f,  0.00573950773f,  -0.0076224613f,
                        0.00943887047f,   1.00167406f,     2.83297682f};
  float l = log1p_f32(mul(u, -u));  // l = -w
  bool small = l > -5.0f;
  float v = small ? sub(-2.5f, l) : add(sqrt(-l), -3.0f);
  float p = small ? lt5[0] : ge5[0];
  LOOM_RNG_UNROLL
  for (int i = 1; i < 9; ++i) p = fma(p, v, small ? lt5[i] : ge5[i]);
  if (fabs(u) == 1.0f) p = INFINITY;
  return mul(u, p);
}

// --- float64 log1p / erf_inv (deterministic; not bit-matched to XLA, well inside 1 f32 ulp) -----
/// log(y) for y > 0: y = 2^k m with m in [sqrt(1/2), sqrt(2)), log(m) = 2 atanh(f / (2 + f)).
LOOM_HD double log_f64(double y) {
  if (!(y > 0.0)) return y == 0.0 ? -INFINITY : NAN;
  if (y == INFINITY) return y;
  int k = 0;
  if (y < 2.2250738585072014e-308) {  // subnormal: scale into the normal range
    y = mul(y, 18014398509481984.0);  // 2^54
    k = -54;
  }
  uint64_t bits = as_u64(y);
  k += int((bits >> 52) & 0x7ff) - 1023;
  double m = as_double((bits & 0x000fffffffffffffull) | 0x3ff0000000000000ull);  // [1, 2)
  if (m > 0x1.6a09e667f3bcdp+0) {
    m = mul(m, 0.5);
    ++k;
  }
  double f = sub(m, 1.0);
  double s = div(f, add(2.0, f));
  double z = mul(s, s);
  double r = 2.0 / 25.0;
  for (int j = 11; j >= 1; --j) r = fma(r, z, 2.0 / double(2 * j + 1));
  r = mul(r, z);  // 2z/3 + 2z^2/5 + ...
  double hfsq = mul(mul(0.5, f), f);
  double dk = double(k);
  double tail = fma(s, add(hfsq, r), mul(dk, 0x1.a39ef35793c76p-33));
  return fma(dk, 0x1.62e42fee00000p-1, sub(f, sub(hfsq, tail)));
}

LOOM_HD double log1p_f64(double x) {
  if (!(fabs(x) < 0.41421356237309504880)) return log_f64(add(x, 1.0));
  const double num[7] = {4.5270000862445199635215E-5, 4.9854102823193375972212E-1,
                         6.5787325942061044846969E0,  2.9911919328553073277375E1,
                         6.0949667980987787057556E1,  5.7112963590585538103336E1,
                         2.0039553499201281259648E1};
  const double den[7] = {1.0,
                         1.5062909083469192043167E1,
                         8.3047565967967209469434E1,
                         2.2176239823732856465394E2,
                         3.0909872225312059774938E2,
                         2.1642788614495947685003E2,
                         6.0118660497603843919306E1};
  double p = num[0], q = den[0];
  for (int i = 1; i < 7; ++i) {
    p = fma(p, x, num[i]);
    q = fma(q, x, den[i]);
  }
  double x2 = mul(x, x);
  double r = mul(mul(x, x2), div(p, q));
  r = fma(-0.5, x2, r);
  return add(x, r);
}

/// XLA's ErfInv64 (Giles' double-precision polynomials).
LOOM_HD double erfinv_f64(double u) {
  const double lt625c[23] = {
      -3.6444120640178196996e-21, -1.685059138182016589e-19,  1.2858480715256400167e-18,
      1.115787767802518096e-17,   -1.333171662854620906e-16,  2.0972767875968561637e-17,
      6.6376381343583238325e-15,  -4.0545662729752068639e-14, -8.1519341976054721522e-14,
      2.6335093153082322977e-12,  -1.2975133253453532498e-11, -5.4154120542946279317e-11,
      1.051212273321532285e-09,   -4.1126339803469836976e-09, -2.9070369957882005086e-08,
      4.2347877827932403518e-07,  -1.3654692000834678645e-06, -1.3882523362786468719e-05,
      0.0001867342080340571352,   -0.00074070253416626697512, -0.0060336708714301490533,
      0.24015818242558961693,     1.6536545626831027356};
  const double lt16c[19] = {
      2.2137376921775787049e-09,  9.0756561938885390979e-08,  -2.7517406297064545428e-07,
      1.8239629214389227755e-08,  1.5027403968909827627e-06,  -4.013867526981545969e-06,
      2.9234449089955446044e-06,  1.2475304481671778723e-05,  -4.7318229009055733981e-05,
      6.8284851459573175448e-05,  2.4031110387097893999e-05,  -0.0003550375203628474796,
      0.00095328937973738049703,  -0.0016882755560235047313,  0.0024914420961078508066,
      -0.0037512085075692412107,  0.005370914553590063617,    1.0052589676941592334,
      3.0838856104922207635};
  const double ge16c[17] = {
      -2.7109920616438573243e-11, -2.5556418169965252055e-10, 1.5076572693500548083e-09,
      -3.7894654401267369937e-09, 7.6157012080783393804e-09,  -1.4960026627149240478e-08,
      2.9147953450901080826e-08,  -6.7711997758452339498e-08, 2.2900482228026654717e-07,
      -9.9298272942317002539e-07, 4.5260625972231537039e-06,  -1.9681778105531670567e-05,
      7.5995277030017761139e-05,  -0.00021503011930044477347, -0.00013871931833623122026,
      1.0103004648645343977,      4.8499064014085844221};
  double w = -log1p_f64(mul(u, -u));
  bool lt625 = w < 6.25, lt16 = w < 16.0;
  double v = lt625 ? sub(w, 3.125) : sub(sqrt(w), lt16 ? 3.25 : 5.0);
  // Each region runs its own Horner chain; selecting per coefficient over unrolled loops (as
  // XLA writes it) keeps the tables out of GPU local memory.
  double p = lt625 ? lt625c[0] : lt16 ? lt16c[0] : ge16c[0];
  LOOM_RNG_UNROLL
  for (int i = 1; i < 17; ++i) p = fma(p, v, lt625 ? lt625c[i] : lt16 ? lt16c[i] : ge16c[i]);
  LOOM_RNG_UNROLL
  for (int i = 17; i < 19; ++i)
    if (lt16) p = fma(p, v, lt625 ? lt625c[i] : lt16c[i]);
  LOOM_RNG_UNROLL
  for (int i = 19; i < 23; ++i)
    if (lt625) p = fma(p, v, lt625c[i]);
  if (fabs(u) == 1.0) p = INFINITY;
  return mul(u, p);
}

// --- per-dtype arithmetic ----------------------------------------------------------------------
/// Compute type, storage type and rounding of each floating dtype. The half types compute in
/// float32 and round after every operation, as XLA CPU does for bf16/f16 arithmetic.
template <DType D>
struct Real;
template <>
struct Real<DType::F32> {
  using T = float;
  using Storage = float;
  LOOM_HD static float round(float x) { return x; }
  LOOM_HD static Storage store(float x) { return x; }
  /// bits >> 9 | bits_of(1.0), minus 1: [0, 1) with 23 random mantissa bits.
  LOOM_HD static float unit(Pair p) { return sub(as_float(((p.a ^ p.b) >> 9) | 0x3f800000u), 1.0f); }
};
template <>
struct Real<DType::F64> {
  using T = double;
  using Storage = double;
  LOOM_HD static double round(double x) { return x; }
  LOOM_HD static Storage store(double x) { return x; }
  LOOM_HD static double unit(Pair p) {
    uint64_t bits = (uint64_t(p.a) << 32) | p.b;
    return sub(as_double((bits >> 12) | 0x3ff0000000000000ull), 1.0);
  }
};
template <>
struct Real<DType::BF16> {
  using T = float;
  using Storage = uint16_t;
  LOOM_HD static float round(float x) { return bf16_value(bf16_bits(x)); }
  LOOM_HD static Storage store(float x) { return bf16_bits(x); }
  /// bfloat16 has 7 mantissa bits (< 8), so JAX draws 8-bit bits: the low byte of a ^ b.
  LOOM_HD static float unit(Pair p) {
    uint32_t b8 = (p.a ^ p.b) & 0xffu;
    return sub(bf16_value(uint16_t((b8 >> 1) | 0x3f80u)), 1.0f);
  }
};
template <>
struct Real<DType::F16> {
  using T = float;
  using Storage = uint16_t;
  LOOM_HD static float round(float x) { return f16_value(f16_bits(x)); }
  LOOM_HD static Storage store(float x) { return f16_bits(x); }
  LOOM_HD static float unit(Pair p) {
    uint32_t b16 = (p.a ^ p.b) & 0xffffu;
    return sub(f16_value(uint16_t((b16 >> 6) | 0x3c00u)), 1.0f);
  }
};

/// max(lo, f * (hi - lo) + lo) in the dtype's arithmetic (one FMA for f32/f64 as XLA CPU
/// contracts it; per-operation rounding for the half types).
template <DType D>
LOOM_HD typename Real<D>::T scale_unit(typename Real<D>::T f, typename Real<D>::T lo,
                                              typename Real<D>::T hi) {
  using R = Real<D>;
  auto scale = R::round(sub(hi, lo));
  if constexpr (D == DType::F32 || D == DType::F64) {
    return max(lo, fma(f, scale, lo));
  } else {
    return max(lo, R::round(add(R::round(mul(f, scale)), lo)));
  }
}

/// sqrt(2) * erf_inv(u) in the dtype (erf_inv of the half types runs in f32, rounded after).
template <DType D>
LOOM_HD typename Real<D>::T sqrt2_erfinv(typename Real<D>::T u) {
  using R = Real<D>;
  if constexpr (D == DType::F64) {
    return mul(erfinv_f64(u), 0x1.6a09e667f3bcdp+0);
  } else if constexpr (D == DType::F32) {
    return mul(erfinv_f32(u), 0x1.6a09e6p+0f);
  } else {
    return R::round(mul(R::round(erfinv_f32(u)), R::round(0x1.6a09e6p+0f)));
  }
}

template <DType D>
LOOM_HD typename Real<D>::Storage uniform_at(uint32_t k0, uint32_t k1, uint64_t i,
                                                    typename Real<D>::T lo,
                                                    typename Real<D>::T hi) {
  using R = Real<D>;
  return R::store(scale_unit<D>(R::unit(counter_pair(k0, k1, i)), lo, hi));
}

/// nextafter(-1, 0) in each dtype: the lower end of normal's uniform draw.
template <DType D>
LOOM_HD typename Real<D>::T minus_one_up() {
  if constexpr (D == DType::F64) return -0x1.fffffffffffffp-1;
  else if constexpr (D == DType::F32) return -0x1.fffffep-1f;
  else if constexpr (D == DType::BF16) return -0x1.fep-1f;
  else return -0x1.ffcp-1f;  // float16
}

template <DType D>
LOOM_HD typename Real<D>::Storage normal_at(uint32_t k0, uint32_t k1, uint64_t i) {
  using R = Real<D>;
  using T = typename R::T;
  T u = scale_unit<D>(R::unit(counter_pair(k0, k1, i)), minus_one_up<D>(), T(1));
  return R::store(sqrt2_erfinv<D>(u));
}

template <DType D>
LOOM_HD typename Real<D>::Storage truncated_normal_at(uint32_t k0, uint32_t k1,
                                                             uint64_t i, typename Real<D>::T a,
                                                             typename Real<D>::T b,
                                                             typename Real<D>::T clip_lo,
                                                             typename Real<D>::T clip_hi) {
  using R = Real<D>;
  auto u = scale_unit<D>(R::unit(counter_pair(k0, k1, i)), a, b);
  return R::store(min(clip_hi, max(clip_lo, sqrt2_erfinv<D>(u))));
}

LOOM_HD bool bernoulli_at(uint32_t k0, uint32_t k1, uint64_t i, float p) {
  return Real<DType::F32>::unit(counter_pair(k0, k1, i)) < p;  // uniform(0, 1) is the unit draw
}

}  // namespace rng
}  // namespace loom::cpu
