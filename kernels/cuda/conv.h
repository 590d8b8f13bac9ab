// Convolution on CUDA through cuDNN's legacy (v7-style) API, NHWC activations. Same geometry as
// kernels/cpu/conv.h, restricted to what that API expresses: no input dilation and symmetric,
// non-negative padding (pad_lo == pad_hi >= 0). core/ops/conv.cc rewrites every other
// convolution into this form with pad/slice ops before calling here.
//
// Kernels are in cuDNN's KRSC layout, [C_out, *k, C_in / groups] (the op layer transposes
// loom's HWIO). float32 (FMA math: no TF32 unless loom::allow_tf32()), bfloat16 and float16
// (tensor cores, float32 accumulation), float64 where cuDNN has an NHWC algorithm for it.
// Algorithms come from cuDNN's heuristics, or with set_conv_autotune (core/autotune.h) from
// timing the candidates on the first call's buffers, once per (shapes, dtype, options, math
// mode); workspaces from the caching allocator. Everything is enqueued on `stream` of GPU `device`.
#pragma once
#include "core/dtype.h"
#include "kernels/cpu/conv.h"  // ConvGeometry
#include "kernels/cuda/runtime.h"

namespace loom::cuda {

void conv_forward(const ConvGeometry& g, DType dtype, const void* x, const void* w_krsc, void* y,
                  int device, Stream stream);
/// dx = the gradient of sum(y * dy) with respect to x, overwriting dx or, with `accumulate`,
/// added to it (cuDNN's beta = 1: another contribution to the same gradient without an add pass).
void conv_backward_input(const ConvGeometry& g, DType dtype, const void* dy, const void* w_krsc,
                         void* dx, bool accumulate, int device, Stream stream);
/// dw_krsc (overwritten) = the gradient of sum(y * dy) with respect to the kernel, in KRSC.
void conv_backward_kernel(const ConvGeometry& g, DType dtype, const void* x, const void* dy,
                          void* dw_krsc, int device, Stream stream);

}  // namespace loom::cuda
