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
/// Elements of the whole batch's column matrix (im2col), which conv_forward can keep for
/// conv_backward_kernel; 0 when the convolution reads x as it is (1x1 taps, unit strides, no
/// padding: nothing to keep).
int64_t conv_columns_size(const ConvGeometry& g);
/// The column-matrix bytes up to which the whole batch is done in one piece (larger ones go in
/// chunks of images); conv_forward keeps columns only up to this size.
inline constexpr size_t kConvColumnsChunkBytes = size_t(32) << 20;
/// y = conv(x, w), plus `bias` ([C_out], may be null) added to every output row by the products
/// themselves. With `columns` (conv_columns_size(g) elements of dtype, at most
/// kConvColumnsChunkBytes), the column matrix is left there for conv_backward_kernel.
void conv_forward(const ConvGeometry& g, DType dtype, const void* x, const void* w, void* y,
                  void* columns = nullptr, const void* bias = nullptr);
/// dx = d(sum(y * dy)) / dx, overwriting dx or, with `accumulate`, added to it.
void conv_backward_input(const ConvGeometry& g, DType dtype, const void* dy, const void* w,
                         void* dx, bool accumulate);
/// dw = d(sum(y * dy)) / dw (dw is overwritten). With the `columns` conv_forward kept for this x,
/// im2col is not done again (the same numbers: the same one product) and x is not read (it may
/// be null).
void conv_backward_kernel(const ConvGeometry& g, DType dtype, const void* x, const void* dy,
                          void* dw, const void* columns = nullptr);

}  // namespace loom::cpu
