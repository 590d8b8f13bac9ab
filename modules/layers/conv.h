// Conv and ConvTranspose (flax.linen.Conv / ConvTranspose), channels-last: inputs
// [batch..., spatial..., features] (one spatial dim per kernel_size entry; several batch dims
// are flattened and restored, none is allowed), kernel [*kernel_size, in / groups, features],
// bias [features]. Flax's defaults: strides 1, padding SAME, lecun_normal kernel, zero bias.
//
// Example:
//   Tensor y = nn::Conv{.features = 32, .kernel_size = {3, 3}}(x);              // SAME
//   Tensor z = nn::Conv{.features = 64, .kernel_size = {7, 7}, .strides = {2, 2},
//                       .padding = Padding::explicit_pads({{3, 3}, {3, 3}}),
//                       .use_bias = false}(x);
//   Tensor u = nn::ConvTranspose{.features = 16, .kernel_size = {3, 3}, .strides = {2, 2}}(y);
#pragma once
#include <optional>

#include "core/ops/padding.h"
#include "modules/initializers.h"
#include "modules/module.h"

namespace loom::nn {

struct Conv : Module<Conv> {
  int64_t features = 0;
  Shape kernel_size = {};
  Shape strides = {};  // empty: 1 on every spatial dim
  /// SAME (extra on the high side), VALID, explicit pairs, CIRCULAR, REFLECT, CAUSAL (1-D).
  Padding padding = Padding::same();
  Shape input_dilation = {};
  Shape kernel_dilation = {};
  int64_t feature_group_count = 1;
  bool use_bias = true;
  std::optional<DType> dtype = {};
  DType param_dtype = DType::F32;
  Initializer kernel_init = initializers::lecun_normal();
  Initializer bias_init = initializers::zeros();

  Tensor call(const Tensor& x) const;
};

struct ConvTranspose : Module<ConvTranspose> {
  int64_t features = 0;
  Shape kernel_size = {};
  Shape strides = {};
  /// SAME (out = in * stride), VALID, explicit pairs (padding the stride-dilated input), or
  /// CIRCULAR (VALID, then the output wrapped periodically onto in * stride).
  Padding padding = Padding::same();
  Shape kernel_dilation = {};
  bool use_bias = true;
  /// true: the kernel is [*k, features, in] and is flipped (the gradient of a Conv).
  bool transpose_kernel = false;
  std::optional<DType> dtype = {};
  DType param_dtype = DType::F32;
  Initializer kernel_init = initializers::lecun_normal();
  Initializer bias_init = initializers::zeros();

  Tensor call(const Tensor& x) const;
};

}  // namespace loom::nn
