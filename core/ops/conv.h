// Convolution as lax.conv_general_dilated / lax.conv_transpose with Flax's layouts: NHWC input
// [N, *spatial, C_in], HWIO kernel [*k, C_in / groups, C_out], output [N, *out_spatial, C_out].
// 1, 2 or 3 spatial dims; forward and backward (input and kernel) on the CPU (im2col + OpenBLAS)
// and on CUDA (cuDNN). float32 everywhere, float64 too, bfloat16/float16 on the GPU (the CPU
// computes them in float32).
//
// Padding follows Flax's nn.Conv exactly: SAME (extra padding on the high side), VALID, explicit
// (lo, hi) pairs (negative pairs crop), CIRCULAR / REFLECT (the input is first padded by
// ((k_eff-1)/2, k_eff/2) with wrapped / reflected values, then VALID) and CAUSAL (1-D: left pad
// dilation*(k-1)), where k_eff = (k-1)*kernel_dilation + 1.
//
// Example:
//   Tensor x = ...;                                   // [8, 28, 28, 1]
//   Tensor k = ...;                                   // [3, 3, 1, 32]
//   Tensor y = conv(x, k, {.strides = {2, 2}});       // [8, 14, 14, 32], SAME padding
//   Tensor u = conv_transpose(y, k2, {.strides = {2, 2}});   // k2: [3, 3, 32, 16] -> [8, 28, 28,
//   16]
#pragma once
#include "core/ops/padding.h"
#include "core/tensor.h"

namespace loom {

struct ConvOptions {
  Shape strides = {};  // empty: all 1
  Padding padding = Padding::same();
  Shape input_dilation = {};   // lhs dilation; empty: all 1
  Shape kernel_dilation = {};  // rhs dilation (atrous); empty: all 1
  int64_t feature_group_count = 1;
};

/// lax.conv_general_dilated(x, kernel, strides, padding, input_dilation, kernel_dilation,
/// ('NHWC', 'HWIO', 'NHWC'), feature_group_count), with Flax's CIRCULAR/REFLECT/CAUSAL modes.
/// SAME padding with input dilation throws ValueError, as JAX does (give explicit pairs or use
/// conv_transpose). Differentiable in x and kernel.
Tensor conv(const Tensor& x, const Tensor& kernel, const ConvOptions& opt = {});
/// conv(x, kernel, opt) + bias for a bias [C_out] (nn.Conv's), differentiable in all three. On
/// the CPU, in float32/float64, the products add the bias as they write the output (saving a
/// pass over it); elsewhere it is the separate add, so the values are those of the two ops,
/// except that the CPU rounds once where the sum over the taps is split into blocks.
Tensor conv_bias(const Tensor& x, const Tensor& kernel, const Tensor& bias,
                 const ConvOptions& opt = {});

struct ConvTransposeOptions {
  Shape strides = {};  // empty: all 1
  /// SAME: out = in * stride; VALID: out = in * stride + max(k_eff - stride, 0); explicit pairs
  /// pad the stride-dilated input (as lax.conv_transpose with use_consistent_padding=False).
  Padding padding = Padding::same();
  Shape kernel_dilation = {};  // empty: all 1
  /// false (Flax's default): the kernel [*k, C_in, C_out] is used as is. true: the kernel is
  /// [*k, C_out, C_in], flipped spatially and its channel axes swapped (the gradient of conv).
  bool transpose_kernel = false;
};

/// lax.conv_transpose with NHWC / HWIO (Flax's nn.ConvTranspose minus its bias and its CIRCULAR
/// mode, which Flax builds on top of this with a VALID transpose and a periodic wrap-sum).
/// Computed as conv with input_dilation = strides. Differentiable in x and kernel.
Tensor conv_transpose(const Tensor& x, const Tensor& kernel, const ConvTransposeOptions& opt = {});

// A 1x1 convolution with unit strides, no padding and one group runs as a matrix product on
// the HWIO kernel as stored (on the GPU one cuBLASLt product a pass; cuDNN would need the kernel
// and its gradient transposed) unless Fusion::pointwise_conv_as_product is off (core/fusions.h).

namespace detail {
/// conv computed as the CUDA path computes it on any device: input dilation and asymmetric or
/// negative padding applied to x with pad/slice ops, then a symmetric-padding convolution.
/// Exposed so that CPU tests can check that rewrite; use conv().
Tensor conv_symmetric_padding_form(const Tensor& x, const Tensor& kernel, const ConvOptions& opt);
}  // namespace detail

}  // namespace loom
