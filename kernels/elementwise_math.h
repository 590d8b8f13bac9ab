// Scalar math of the elementwise ops, shared by the CPU and CUDA kernels so both compute the same
// formulas. T is the compute type: float (for f32, bf16, f16) or double.
#pragma once
#include <math.h>  // unqualified float/double overloads on host and device
#include <string.h>  // memcpy

#include <cstdint>
#include <type_traits>

#ifdef __CUDACC__
#define LOOM_HD __host__ __device__ __forceinline__
#else
#define LOOM_HD inline __attribute__((always_inline))  // lets a constant op fold its switch
#endif

namespace loom {

enum class UnaryOp : uint8_t {
  Neg, Abs, Sign, Exp, Log, Log1p, Sqrt, Rsqrt, Square, Reciprocal, Tanh, Sigmoid, Relu, Relu6,
  Gelu /* tanh approximation, Flax's default */, GeluExact, Silu, Softplus, Elu, LeakyRelu, Erf,
  LogSigmoid, Sin, Cos
};
const char* unary_op_name(UnaryOp op);

enum class BinaryOp : uint8_t {
  Add, Sub, Mul, Div, Pow, Maximum, Minimum,
  // comparisons produce bool
  Eq, Ne, Lt, Le, Gt, Ge,
  LogicalAnd, LogicalOr
};
const char* binary_op_name(BinaryOp op);
inline bool is_comparison(BinaryOp op) { return op >= BinaryOp::Eq; }

/// e^y in float with no libm call, so that the CPU's element loops vectorise, for y in
/// [-87, 88] (the caller clamps): y = n ln2 + r (Cody-Waite, |r| <= ln2 / 2), e^r by its Taylor
/// series through r^7, 2^n from the exponent bits. Within a few ulp of exp.
LOOM_HD float exp_float_in_range(float y) {
  const int n = int(y * 1.44269504f + 128.5f) - 128;  // rounds to nearest: the sum is positive
  const float fn = float(n);
  const float r = (y - fn * 0.693145751953125f) - fn * 1.42860677e-06f;  // ln2 in two parts
  float e = 1.0f + r * (1.0f / 7.0f);
  e = 1.0f + r * (1.0f / 6.0f) * e;
  e = 1.0f + r * (1.0f / 5.0f) * e;
  e = 1.0f + r * (1.0f / 4.0f) * e;
  e = 1.0f + r * (1.0f / 3.0f) * e;
  e = 1.0f + r * (1.0f / 2.0f) * e;
  e = 1.0f + r * e;
  const int32_t bits = (n + 127) << 23;  // 2^n
  float scale;
  memcpy(&scale, &bits, sizeof scale);
  return e * scale;
}

/// tanh in float with no libm call, so that the CPU's element loops vectorise. |x| < 0.625: the
/// Taylor series of tanh through x^19 (coefficients 2^2n (2^2n - 1) B_2n / (2n)!; the next term
/// is below 1e-8 relative). Above: 1 - 2 / (e^(2|x|) + 1), |x| clamped at 10, where tanh is 1 in
/// float. Within a few ulp of tanh (tests/core/ops/elementwise_test.cc). The device keeps CUDA's
/// tanhf, which the GELU kernels were measured with.
LOOM_HD float tanh_float(float x) {
#ifdef __CUDA_ARCH__
  return tanhf(x);
#else
  const float a = fabsf(x), z = x * x;
  float p = -0.000239129114f;         // -443861162 / 1856156927625
  p = p * z + 0.000590027441f;        // 6404582 / 10854718875
  p = p * z - 0.00145583439f;         // -929569 / 638512875
  p = p * z + 0.00359212804f;         // 21844 / 6081075
  p = p * z - 0.00886323553f;         // -1382 / 155925
  p = p * z + 0.0218694885f;          // 62 / 2835
  p = p * z - 0.053968254f;           // -17 / 315
  p = p * z + 0.13333333f;            // 2 / 15
  p = p * z - 0.33333333f;            // -1 / 3
  const float small = copysignf(a + a * (z * p), x);  // keeps -0
  const float e = exp_float_in_range(2.0f * (a < 10.0f ? a : 10.0f));
  const float big = copysignf(1.0f - 2.0f / (e + 1.0f), x);
  return a < 0.625f ? small : (a >= 0.625f ? big : x);  // NaN fails both: x
#endif
}

/// tanh for a compute type: the vectorisable float version, libm's for double.
template <typename T>
LOOM_HD T tanh_of(T x) {
  if constexpr (std::is_same_v<T, float>) return tanh_float(x);
  else return tanh(x);
}

// sigmoid(2u) for GELU's u, with e = e^(-2u), so that 1 - sigmoid(2u) = e sigmoid(2u) needs no
// subtraction. The host's float route of the two functions below. Below float's range e is 0
// (not the clamp's e^-87, which x^3 in the derivative would scale back up), so the derivative's
// second term is 0 there, or NaN where x or x^2 is infinite, as the tanh form gives in JAX.
LOOM_HD float gelu_sigmoid_host(float x, float& e) {
  const float t = -1.5957691216057308f * (x + 0.044715f * x * x * x);  // -2u
  e = exp_float_in_range(t > -87.0f ? (t < 87.0f ? t : 87.0f) : -87.0f);  // NaN: x stays NaN
  e = t < -87.0f ? 0.0f : e;
  return t > 87.0f ? 0.0f : 1.0f / (1.0f + e);
}

/// GELU's tanh approximation (Flax's default), 0.5 x (1 + tanh(u)) with
/// u = sqrt(2 / pi) (x + 0.044715 x^3), and its derivative. On the host in float it is computed
/// as x sigmoid(2u) = x / (1 + e^(-2u)), the same function with one exponential in place of
/// tanh's two branches (a fifth less time on the CPU by `perf`), and without the tanh form's
/// cancellation in 1 + tanh(u) for negative x; the device and double keep the tanh form.
template <typename T>
LOOM_HD T gelu_tanh_of(T x) {
  constexpr T kSqrt2OverPi = T(0.7978845608028654);
#ifndef __CUDA_ARCH__
  if constexpr (std::is_same_v<T, float>) {
    float e;
    return x * gelu_sigmoid_host(x, e);
  }
#endif
  return T(0.5) * x * (T(1) + tanh_of(kSqrt2OverPi * (x + T(0.044715) * x * x * x)));
}

template <typename T>
LOOM_HD T gelu_tanh_derivative_of(T x) {
  constexpr T kSqrt2OverPi = T(0.7978845608028654);
  const T dinner = kSqrt2OverPi * (T(1) + T(3) * T(0.044715) * x * x);
#ifndef __CUDA_ARCH__
  if constexpr (std::is_same_v<T, float>) {
    float e;
    const float s = gelu_sigmoid_host(x, e);
    return s + 2.0f * x * s * (e * s) * dinner;
  }
#endif
  const T t = tanh_of(kSqrt2OverPi * (x + T(0.044715) * x * x * x));
  return T(0.5) * (T(1) + t) + T(0.5) * x * (T(1) - t * t) * dinner;
}

template <typename T>
LOOM_HD T sigmoid_of(T x) {
  return x >= T(0) ? T(1) / (T(1) + exp(-x)) : exp(x) / (T(1) + exp(x));
}

template <typename T>
LOOM_HD T softplus_of(T x) {  // log(1 + e^x) without overflow, as jax.nn.softplus (logaddexp(x, 0))
  return (x > T(0) ? x : T(0)) + log1p(exp(-fabs(x)));
}

/// f(x) for a floating compute type; `alpha` is the slope of elu / leaky_relu.
template <typename T>
LOOM_HD T unary_apply(UnaryOp op, T x, T alpha) {
  constexpr T kInvSqrt2 = T(0.7071067811865476);
  switch (op) {
    case UnaryOp::Neg: return -x;
    case UnaryOp::Abs: return fabs(x);
    case UnaryOp::Sign: return x > T(0) ? T(1) : (x < T(0) ? T(-1) : x);  // keeps 0 and NaN
    case UnaryOp::Exp: return exp(x);
    case UnaryOp::Log: return log(x);
    case UnaryOp::Log1p: return log1p(x);
    case UnaryOp::Sqrt: return sqrt(x);
    case UnaryOp::Rsqrt: return T(1) / sqrt(x);
    case UnaryOp::Square: return x * x;
    case UnaryOp::Reciprocal: return T(1) / x;
    case UnaryOp::Tanh: return tanh_of(x);
    case UnaryOp::Sigmoid: return sigmoid_of(x);
    case UnaryOp::Relu: return x <= T(0) ? T(0) : x;  // NaN stays NaN, as jax.nn.relu (lax.max)
    case UnaryOp::Relu6: return x < T(0) ? T(0) : (x > T(6) ? T(6) : x);
    case UnaryOp::Gelu: return gelu_tanh_of(x);
    case UnaryOp::GeluExact: return T(0.5) * x * (T(1) + erf(x * kInvSqrt2));
    case UnaryOp::Silu: return x * sigmoid_of(x);
    case UnaryOp::Softplus: return softplus_of(x);
    case UnaryOp::Elu: return x > T(0) ? x : alpha * (exp(x) - T(1));  // jax: expm1
    case UnaryOp::LeakyRelu: return x >= T(0) ? x : alpha * x;
    case UnaryOp::Erf: return erf(x);
    case UnaryOp::LogSigmoid: return -softplus_of(-x);
    case UnaryOp::Sin: return sin(x);
    case UnaryOp::Cos: return cos(x);
  }
  return x;
}

/// f'(x) (y = f(x) is not needed by any rule here). Sign's derivative is 0.
template <typename T>
LOOM_HD T unary_derivative(UnaryOp op, T x, T alpha) {
  constexpr T kInvSqrt2 = T(0.7071067811865476);
  constexpr T kInvSqrt2Pi = T(0.3989422804014327);
  switch (op) {
    case UnaryOp::Neg: return T(-1);
    case UnaryOp::Abs: return x >= T(0) ? T(1) : T(-1);  // JAX's: 1 at +-0, -1 at NaN
    case UnaryOp::Sign: return T(0);
    case UnaryOp::Exp: return exp(x);
    case UnaryOp::Log: return T(1) / x;
    case UnaryOp::Log1p: return T(1) / (T(1) + x);
    case UnaryOp::Sqrt: return T(0.5) / sqrt(x);
    case UnaryOp::Rsqrt: return T(-0.5) / (x * sqrt(x));
    case UnaryOp::Square: return T(2) * x;
    case UnaryOp::Reciprocal: return T(-1) / (x * x);
    case UnaryOp::Tanh: { T t = tanh_of(x); return T(1) - t * t; }
    case UnaryOp::Sigmoid: { T s = sigmoid_of(x); return s * (T(1) - s); }
    case UnaryOp::Relu: return x > T(0) ? T(1) : T(0);
    case UnaryOp::Relu6: return x > T(0) && x < T(6) ? T(1) : T(0);
    case UnaryOp::Gelu: return gelu_tanh_derivative_of(x);
    case UnaryOp::GeluExact:
      return T(0.5) * (T(1) + erf(x * kInvSqrt2)) + x * kInvSqrt2Pi * exp(T(-0.5) * x * x);
    case UnaryOp::Silu: { T s = sigmoid_of(x); return s * (T(1) + x * (T(1) - s)); }
    case UnaryOp::Softplus: return sigmoid_of(x);
    case UnaryOp::Elu: return x > T(0) ? T(1) : alpha * exp(x);
    case UnaryOp::LeakyRelu: return x >= T(0) ? T(1) : alpha;
    case UnaryOp::Erf: return T(1.1283791670955126) * exp(-x * x);
    case UnaryOp::LogSigmoid: return sigmoid_of(-x);
    case UnaryOp::Sin: return cos(x);
    case UnaryOp::Cos: return -sin(x);
  }
  return T(0);
}

/// a (op) b in compute type T (floating or integer); comparisons return 0/1.
template <typename T>
LOOM_HD T binary_apply(BinaryOp op, T a, T b) {
  switch (op) {
    case BinaryOp::Add: return a + b;
    case BinaryOp::Sub: return a - b;
    case BinaryOp::Mul: return a * b;
    case BinaryOp::Div: return a / b;
    case BinaryOp::Pow:
      if constexpr (std::is_floating_point_v<T>) return pow(a, b);
      else return T(pow(double(a), double(b)));
    case BinaryOp::Maximum:  // NaN propagates, as jnp.maximum
      if (a != a || b != b) return a != a ? a : b;
      return a > b ? a : b;
    case BinaryOp::Minimum:
      if (a != a || b != b) return a != a ? a : b;
      return a < b ? a : b;
    case BinaryOp::Eq: return T(a == b);
    case BinaryOp::Ne: return T(a != b);
    case BinaryOp::Lt: return T(a < b);
    case BinaryOp::Le: return T(a <= b);
    case BinaryOp::Gt: return T(a > b);
    case BinaryOp::Ge: return T(a >= b);
    case BinaryOp::LogicalAnd: return T(a != T(0) && b != T(0));
    case BinaryOp::LogicalOr: return T(a != T(0) || b != T(0));
  }
  return a;
}

}  // namespace loom
