// CUDA layer norm / RMS norm over the last axis, forward and backward; same contract as
// norm_rows / norm_rows_backward in kernels/cpu/norm.h (statistics in float, or double for f64),
// launched on `stream`.
#pragma once
#include <cstdint>

#include "core/dtype.h"
#include "kernels/cuda/runtime.h"

namespace loom::cuda {

/// scale and bias (and dscale, dbias) are of the statistics type, or with `half_params` of a
/// half x's own dtype (no float32 copies of a bf16 model's parameters and their gradients).
/// `cached`: rows of up to 1024 elements that take 16-byte packs are held in registers (the
/// default; the ops pass Fusion::norm_rows_in_registers); false runs the streaming kernels.
void norm_rows(const void* x, DType dtype, void* y, DType out_dtype, const void* scale,
               const void* bias, bool half_params, void* mean, void* rstd, int64_t rows, int64_t n,
               double eps, bool rms, Stream stream, bool cached = true);
void norm_rows_backward(const void* x, DType dtype, const void* g, DType out_dtype,
                        const void* mean, const void* rstd, const void* scale, bool half_params,
                        void* dx, int64_t rows, int64_t n, bool rms, bool accumulate,
                        Stream stream, bool cached = true);

/// The scale/bias gradients as kernels/cpu/norm.h's norm_param_grads (mean == nullptr: RMS),
/// using `work`: norm_param_workspace_size(rows, n) values of the accumulation type.
int64_t norm_param_workspace_size(int64_t rows, int64_t n);
void norm_param_grads(const void* x, DType dtype, const void* g, DType out_dtype,
                      const void* mean, const void* rstd, void* dscale, void* dbias,
                      bool half_params, void* work, int64_t rows, int64_t n, Stream stream);

}  // namespace loom::cuda
