// Dense and DenseGeneral (flax.linen.Dense / DenseGeneral) with Flax's defaults: kernel
// lecun_normal, bias zeros, params float32, created kernel first then bias (so their rng keys
// match Flax's).
//
// Example:
//   Tensor y = nn::Dense{.features = 10}(x);                                   // [..., 10]
//   Tensor h = nn::Dense{.features = 256, .activation = nn::DenseActivation::Gelu}(x);
//   Tensor q = nn::DenseGeneral{.features = {8, 64}}(x);                       // [..., 8, 64]
//   Tensor o = nn::DenseGeneral{.features = {512}, .axis = {-2, -1}}(heads);   // [..., 512]
#pragma once
#include <optional>

#include "core/ops/reduce.h"
#include "modules/initializers.h"
#include "modules/module.h"

namespace loom::nn {

/// An activation Dense applies to its output in the same call (Dense::activation).
enum class DenseActivation { None, Relu, Gelu };

struct Dense : Module<Dense> {
  int64_t features = 0;
  bool use_bias = true;
  /// Computation dtype; unset: the promoted dtype of input and params (Flax's dtype=None).
  std::optional<DType> dtype = {};
  DType param_dtype = DType::F32;
  Initializer kernel_init = initializers::lecun_normal();
  Initializer bias_init = initializers::zeros();
  /// relu, or gelu (the tanh form, nn::gelu's default) of the output: what Flax writes as
  /// nn.gelu(nn.Dense(...)(x)), with the same parameters. The CPU composes the same ops. On CUDA
  /// the product's epilogue applies it to the float32 sums before rounding to the output dtype
  /// (for half types, one rounding fewer than the separate ops); under autodiff GELU's epilogue
  /// also keeps its input for the gradient, so the activation costs no pass over memory of its
  /// own (ReLU's gradient runs as its own op).
  DenseActivation activation = DenseActivation::None;

  /// x [..., in] -> [..., features]; kernel [in, features], bias [features].
  Tensor call(const Tensor& x) const;
  /// residual + Dense(x), as Flax's `residual + nn.Dense(...)(x)` with the same parameters: a
  /// residual connection. Without an activation it is matmul_bias_add, which on the GPU adds a
  /// residual of the output's shape in the product's epilogue: no pass writing the product and
  /// reading it back to add. Other residuals broadcast as the add does.
  Tensor call(const Tensor& x, const Tensor& residual) const;
};

struct DenseGeneral : Module<DenseGeneral> {
  Shape features = {};
  /// Input axes contracted with the kernel's leading axes.
  Axes axis = {-1};
  /// Leading input axes (0, 1, ...) the kernel has its own slice for (a batched kernel).
  Axes batch_dims = {};
  bool use_bias = true;
  std::optional<DType> dtype = {};
  DType param_dtype = DType::F32;
  /// Called on the flat 2-D shape [prod(batch) * prod(in axes), prod(features)] and reshaped,
  /// as Flax does, so fan_in is the number of contracted elements.
  Initializer kernel_init = initializers::lecun_normal();
  Initializer bias_init = initializers::zeros();

  /// kernel [batch..., in axes..., features...], bias [batch..., features...]; output
  /// [batch..., the other input axes..., features...].
  Tensor call(const Tensor& x) const;
  /// residual + DenseGeneral(x) (a residual connection); added in the product's epilogue on the
  /// GPU where the product is a Dense over x's trailing axes and residual has the output's shape.
  Tensor call(const Tensor& x, const Tensor& residual) const;
};

}  // namespace loom::nn
