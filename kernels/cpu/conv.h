// Convolution kernels on the CPU: lax.conv_general_dilated in NHWC with HWIO kernels, by im2col +
// OpenBLAS GEMM. ConvGeometry is the fully resolved description that both backends take
// (kernels/cuda/conv.h includes this header for it): every Flax padding mode has already been
// turned into explicit (lo, hi) pairs (CIRCULAR/REFLECT filling is a separate loom::pad).
#pragma once
#include <cstdint>

#include "core/dtype.h"
#include "core/shape.h"

namespace loom {

/// One convolution, all options explicit. Vectors have one entry per spatial dim (1 to 3).
/// x: [batch, *in_spatial, in_channels]; kernel: [*kernel_spatial, in_channels / groups,
/// out_channels]; y: [batch, *out_spatial, out_channels]. Pads may be negative (cropping), as in
/// lax; lhs_dilation inserts (d - 1) zeros between input elements, rhs_dilation between taps.
struct ConvGeometry {
  int64_t batch = 0, in_channels = 0, out_channels = 0, groups = 1;
  Shape in_spatial, kernel_spatial, out_spatial;
  Shape strides, pad_lo, pad_hi, lhs_dilation, rhs_dilation;

  int64_t rank() const { return int64_t(in_spatial.size()); }
  Shape x_shape() const;
  Shape kernel_shape() const;
  Shape y_shape() const;
};

}  // namespace loom

namespace loom::cpu {

// float32 and float64 (other dtypes throw DTypeError; the op layer upcasts bf16/f16).
void conv_forward(const ConvGeometry& g, DType dtype, const void* x, const void* w, void* y);
/// dx = d(sum(y * dy)) / dx, overwriting dx or, with `accumulate`, added to it.
void conv_backward_input(const ConvGeometry& g, DType dtype, const void* dy, const void* w,
                         void* dx, bool accumulate);
/// dw = d(sum(y * dy)) / dw (dw is overwritten).
void conv_backward_kernel(const ConvGeometry& g, DType dtype, const void* x, const void* dy,
                          void* dw);

}  // namespace loom::cpu
