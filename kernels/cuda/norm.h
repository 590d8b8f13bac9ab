// CUDA layer norm / RMS norm over the last axis, forward and backward; same contract as
// norm_rows / norm_rows_backward in kernels/cpu/norm.h (statistics in float, or double for f64),
// launched on `stream`.
#pragma once
#include <cstdint>

#include "core/dtype.h"
#include "kernels/cuda/runtime.h"

namespace loom::cuda {

void norm_rows(const void* x, DType dtype, void* y, DType out_dtype, const void* scale,
               const void* bias, void* mean, void* rstd, int64_t rows, int64_t n, double eps,
               bool rms, Stream stream);
void norm_rows_backward(const void* x, DType dtype, const void* g, DType out_dtype,
                        const void* mean, const void* rstd, const void* scale, void* dx,
                        int64_t rows, int64_t n, bool rms, Stream stream);

}  // namespace loom::cuda
