// The exponentials and sums of the CPU's softmax-shaped rows (softmax, masked softmax,
// cross-entropy): exponentials in float for float and the half types (no libm call, so their
// loops vectorise; x - max is a float there, as in JAX and the CUDA kernels), in double when a
// double is involved (the float64 gradient checks); sums in double in every case.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>

#include "kernels/elementwise_math.h"

namespace loom::cpu {

/// What a row of T values computes its exponentials in.
template <typename T>
using RowCompute = std::conditional_t<std::is_same_v<T, double>, double, float>;

/// The largest of e[0, n), NaN when one is NaN (as jnp.max). In double one at a time; in float
/// eight lanes at a time with GCC's vector types, since GCC leaves a conditional max reduction
/// scalar (it was most of the masked softmax's time with the mask compare).
inline double row_max(const double* e, int64_t n) {
  double m = -std::numeric_limits<double>::infinity();
  for (int64_t j = 0; j < n; ++j) {
    if (e[j] != e[j]) return e[j];
    m = e[j] > m ? e[j] : m;
  }
  return m;
}

inline float row_max(const float* e, int64_t n) {
  using Floats = float __attribute__((vector_size(32)));
  using Ints = int32_t __attribute__((vector_size(32)));
  constexpr float kLow = -std::numeric_limits<float>::infinity();
  Floats m = {kLow, kLow, kLow, kLow, kLow, kLow, kLow, kLow};
  Ints nan = {};
  int64_t j = 0;
  for (; j + 8 <= n; j += 8) {
    Floats x;
    std::memcpy(&x, e + j, sizeof x);
    m = x > m ? x : m;
    nan |= x != x;
  }
  float r = kLow;
  bool any_nan = false;
  for (int k = 0; k < 8; ++k) {
    r = m[k] > r ? m[k] : r;
    any_nan |= nan[k] != 0;
  }
  for (; j < n; ++j) {
    r = e[j] > r ? e[j] : r;
    any_nan |= e[j] != e[j];
  }
  return any_nan ? std::numeric_limits<float>::quiet_NaN() : r;
}

/// e^d for d <= 0 (x - max), 0 where that is below the normal range (d < -87 in float, -746 in
/// double: glibc's exp reaches that 0 through its slow error path, and a causal mask sends half
/// of every attention row's logits there). NaN gives 0; a softmax row's sum is then 0 and 0 / 0
/// makes every output NaN, as jax.nn.softmax's.
inline float exp_or_zero(float d) { return d >= -87.0f ? exp_float_in_range(d) : 0.0f; }
inline double exp_or_zero(double d) { return d >= -746.0 ? std::exp(d) : 0.0; }

/// The sum of f(j) for j < n in double, in eight interleaved partial sums: one chain of
/// dependent additions was most of a short row's time.
template <typename F>
double sum_of(int64_t n, F f) {
  double part[8] = {};
  int64_t j = 0;
  for (; j + 8 <= n; j += 8)
    for (int k = 0; k < 8; ++k) part[k] += f(j + k);
  double s = 0;
  for (; j < n; ++j) s += f(j);
  for (double p : part) s += p;
  return s;
}

/// e(j) = exp(v(j) - max) over a row of n values v(j); returns the max. The values are read
/// into `e` first, so that the exponentials' loop has no loads of strided or masked elements
/// and vectorises.
template <typename C, typename Value>
C exponentials(int64_t n, Value v, C* e) {
  for (int64_t j = 0; j < n; ++j) e[j] = v(j);
  const C m = row_max(e, n);
  for (int64_t j = 0; j < n; ++j) e[j] = exp_or_zero(e[j] - m);
  return m;
}

}  // namespace loom::cpu
