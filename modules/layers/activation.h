// Activation functions and pooling in loom::nn, as flax.linen re-exports jax.nn's: nn::relu is
// loom::relu, and so on. Those loom lacks as single ops are composed here from differentiable
// ops with jax.nn's formulas. PReLU is the one activation with a parameter.
//
// Example:
//   Tensor h = nn::gelu(nn::Dense{.features = 256}(x));      // tanh-approximate, as Flax
//   Tensor p = nn::avg_pool(h, {2, 2}, {2, 2});
#pragma once
#include "core/ops/elementwise.h"
#include "core/ops/pool.h"
#include "core/ops/reduce.h"
#include "core/ops/shape.h"
#include "core/ops/softmax.h"
#include "modules/initializers.h"
#include "modules/module.h"

namespace loom::nn {

using loom::elu;
using loom::gelu;
using loom::leaky_relu;
using loom::log_sigmoid;
using loom::log_softmax;
using loom::logsumexp;
using loom::one_hot;
using loom::relu;
using loom::relu6;
using loom::sigmoid;
using loom::silu;
using loom::softmax;
using loom::softplus;
using loom::tanh;

using loom::avg_pool;
using loom::max_pool;
using loom::min_pool;

inline Tensor swish(const Tensor& x) { return silu(x); }
/// max(x, 0) + alpha * (exp(min(x, 0) / alpha) - 1).
inline Tensor celu(const Tensor& x, double alpha = 1.0) {
  return relu(x) + (exp(minimum(x, zeros_like(x)) / alpha) - 1.0) * alpha;
}
/// scale * elu(x, alpha) with jax.nn.selu's constants.
inline Tensor selu(const Tensor& x) {
  return elu(x, 1.6732632423543772848170429916717) * 1.0507009873554804934193349852946;
}
inline Tensor hard_tanh(const Tensor& x) { return clip(x, -1.0, 1.0); }
/// relu6(x + 3) / 6.
inline Tensor hard_sigmoid(const Tensor& x) { return relu6(x + 3.0) / 6.0; }
inline Tensor hard_silu(const Tensor& x) { return x * hard_sigmoid(x); }
inline Tensor hard_swish(const Tensor& x) { return hard_silu(x); }
/// x / (|x| + 1).
inline Tensor soft_sign(const Tensor& x) { return x / (abs(x) + 1.0); }
/// Gated linear unit: the halves a, b of `axis`, a * sigmoid(b).
inline Tensor glu(const Tensor& x, int64_t axis = -1) {
  std::vector<Tensor> halves = split(x, 2, axis);
  return halves[0] * sigmoid(halves[1]);
}
/// (x - mean) * rsqrt(var + epsilon) over `axes` (var = mean(x^2) - mean^2, as jax.nn).
inline Tensor standardize(const Tensor& x, const Axes& axes = {-1}, double epsilon = 1e-5) {
  Tensor mu = mean(x, axes, true);
  Tensor var = mean(square(x), axes, true) - square(mu);
  return (x - mu) * rsqrt(var + epsilon);
}

/// flax.linen.PReLU: where(x >= 0, x, slope * x) with a learned scalar slope.
struct PReLU : Module<PReLU> {
  DType param_dtype = DType::F32;
  double negative_slope_init = 0.01;

  Tensor call(const Tensor& x) const {
    Tensor slope = param("negative_slope", initializers::constant(negative_slope_init), {},
                         param_dtype);
    return where(greater_equal(x, scalar_like(0.0, x)), x, x * slope.to(x.dtype()));
  }
};

}  // namespace loom::nn
