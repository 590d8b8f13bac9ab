// CPU normalisation kernels (contiguous tensors). Statistics use Flax's fast variance,
// var = max(0, mean(x^2) - mean(x)^2), accumulated in double and stored in the accumulation
// type A (double for f64 inputs, float otherwise). `out_dtype` is the input dtype or, for half
// inputs with float parameters, F32 (Flax promotes the result with the parameters' dtype).
// Scale and bias are A-typed vectors (nullptr = absent).
#pragma once
#include <cstdint>

#include "core/dtype.h"

namespace loom::cpu {

/// Layer norm (rms == false) or RMS norm (rms == true) of each row of x [rows, n]:
/// y = (x - mean) * (rsqrt(var + eps) * scale) + bias (RMS: mean = 0, var = mean(x^2), no bias).
/// Writes mean (layer norm only) and rstd = rsqrt(var + eps) per row for the backward pass.
void norm_rows(const void* x, DType dtype, void* y, DType out_dtype, const void* scale,
               const void* bias, void* mean, void* rstd, int64_t rows, int64_t n, double eps,
               bool rms);
/// dx for norm_rows given the output gradient g (of out_dtype); dx has `dtype` and is
/// overwritten or, with `accumulate`, added to (another contribution to x's gradient).
void norm_rows_backward(const void* x, DType dtype, const void* g, DType out_dtype,
                        const void* mean, const void* rstd, const void* scale, void* dx,
                        int64_t rows, int64_t n, bool rms, bool accumulate);

/// The parameter gradients of norm_rows from the output gradient g (out_dtype): per column,
/// dscale[j] = sum_r g[r, j] * (x[r, j] - mean[r]) * rstd[r] (mean == nullptr: RMS norm, 0) and
/// dbias[j] = sum_r g[r, j], A-typed (nullptr = not wanted). Summed in fixed row chunks, so the
/// result does not depend on the number of threads.
void norm_param_grads(const void* x, DType dtype, const void* g, DType out_dtype,
                      const void* mean, const void* rstd, void* dscale, void* dbias, int64_t rows,
                      int64_t n);

/// Batch statistics of each column of x [m, c]: mean and biased variance (A-typed, length c).
void channel_stats(const void* x, DType dtype, int64_t m, int64_t c, void* mean, void* var);
/// y = act(bn + residual) with bn = (x - mean) * (rsqrt(var + eps) * scale) + bias per column of
/// x [m, c]; the epilogue (ResNet's relu(norm(y)) and relu(residual + y)) costs no extra pass.
/// `residual` (nullptr = none) is [m, c] of the input dtype; bn is rounded to out_dtype before
/// the add, so the result equals the unfused add of the rounded norm. act = relu when `relu`.
void channel_normalize(const void* x, DType dtype, void* y, DType out_dtype, const void* mean,
                       const void* var, const void* scale, const void* bias,
                       const void* residual, bool relu, int64_t m, int64_t c, double eps);
/// Per-column sums for the batch-norm backward: sum_g = sum(g), sum_gx = sum(g * xhat) with
/// xhat = (x - mean) * rstd (A-typed, length c). With a relu epilogue, `relu_out` is the forward
/// output y (out_dtype) and g is masked by y > 0 first; `g_masked` (nullptr = not wanted,
/// out_dtype, [m, c]) receives that masked gradient, which is the residual's gradient.
void channel_backward_sums(const void* x, DType dtype, const void* g, DType out_dtype,
                           const void* mean, const void* rstd, const void* relu_out, int64_t m,
                           int64_t c, void* sum_g, void* sum_gx, void* g_masked);
/// dx = scale * rstd * (g - sum_g / m - xhat * sum_gx / m) (the batch statistics' gradient), g
/// masked by relu_out > 0 when relu_out is given (as channel_backward_sums).
void channel_backward_dx(const void* x, DType dtype, const void* g, DType out_dtype,
                         const void* mean, const void* rstd, const void* scale,
                         const void* relu_out, const void* sum_g, const void* sum_gx, void* dx,
                         int64_t m, int64_t c);

}  // namespace loom::cpu
