// Matrix products: matmul (numpy), dot_general (lax.dot_general), two-operand einsum, and a
// fused matmul + bias (+ activation) for Dense layers. Forward and backward on CPU (OpenBLAS)
// and CUDA (cuBLASLt).
//
// Dtypes: operands promote (numpy/JAX rules) to a common floating dtype. The CPU computes
// bfloat16/float16 products in float32 and rounds the result; the GPU runs them on tensor cores
// with float32 accumulation. CUDA float32 uses exact FP32 math unless set_allow_tf32(true)
// (core/precision.h). Integer operands are rejected.
//
// Example:
//   Tensor y = matmul(x, w);                                      // [..., M, K] @ [K, N]
//   Tensor h = dot_general(x, k, {{1, 2}, {0, 1}, {}, {}});       // DenseGeneral over 2 axes
//   Tensor s = einsum("...qhd,...khd->...hqk", q, k);             // attention logits
#pragma once
#include <string>

#include "core/ops/reduce.h"
#include "core/tensor.h"
#include "kernels/cpu/gemm.h"

namespace loom {

/// numpy.matmul: 1-D operands are promoted to a matrix (and the added dim removed afterwards);
/// batch dims broadcast. Throws ShapeError naming both shapes when the inner sizes differ.
Tensor matmul(const Tensor& a, const Tensor& b);

/// Axes of lax.dot_general (negative axes count from the end). Contracting and batch axes pair
/// up by position and must have equal sizes (batch dims do not broadcast).
struct DotDims {
  Axes lhs_contracting, rhs_contracting, lhs_batch, rhs_batch;
};

/// lax.dot_general: output dims are the batch dims (in lhs_batch order), then the remaining lhs
/// dims, then the remaining rhs dims, each in their original order.
Tensor dot_general(const Tensor& a, const Tensor& b, const DotDims& dims);

namespace detail {
/// dot_general named `op` in its errors, debug_nans checks and graph node: for ops computed as
/// a product (conv's 1x1 convolutions).
Tensor dot_general_as(const Tensor& a, const Tensor& b, const DotDims& dims, const char* op);
}  // namespace detail

/// Two-operand einsum, e.g. "ij,jk->ik", "bhqd,bhkd->bhqk", "...qhd,...khd->...hqk".
/// Letters a-z/A-Z and "..." (broadcast dims, right-aligned); without "->" the output is
/// "..." then the letters used once, sorted (numpy's implicit mode). Indices only in one operand
/// and absent from the output are summed first; size-1 dims broadcast against their partner.
/// A letter repeated within one operand (a diagonal) throws NotImplementedError.
Tensor einsum(const std::string& spec, const Tensor& a, const Tensor& b);

/// act(a @ b + bias) for a [..., K], b [K, N], bias [N] (Epilogue::None: a @ b, bias ignored).
/// On the GPU one cuBLASLt call with a fused epilogue (GELU is the tanh form, as Flax's
/// default); under autodiff GELU's epilogue also keeps its input for the gradient, and ReLU
/// runs as its own op after the fused bias. The CPU composes matmul, add and relu/gelu.
Tensor matmul_bias_act(const Tensor& a, const Tensor& b, const Tensor& bias,
                       Epilogue epilogue = Epilogue::Bias);

/// residual + (a @ b + bias) for a [..., K], b [K, N], bias [N] (or undefined: no bias) and a
/// residual that broadcasts against [..., N] (as the add does): a residual connection around a
/// Dense layer, x + Dense(y). On the GPU, for a dense residual of the output's shape and the
/// product's dtype, one cuBLASLt call that reads it in its epilogue (beta = 1), so the product's
/// own output is never written and read back by an add; it rounds once where the separate ops
/// round twice. Otherwise, and on the CPU, the ops composed. Differentiable; the residual's
/// gradient is the upstream one (summed down where it broadcast).
Tensor matmul_bias_add(const Tensor& a, const Tensor& b, const Tensor& bias,
                       const Tensor& residual);

}  // namespace loom
