// The one place loom calls the system BLAS's general product (OpenBLAS in the Debian builds).
#pragma once
#include <cstdint>

namespace loom::cpu {

/// C = op(A) @ op(B), or C += op(A) @ op(B) with `accumulate`: row-major m x n C with rows ldc
/// apart; op transposes an operand stored as [k, m] (A) or [n, k] (B). T is float or double.
/// Without `accumulate` C's m x n elements are zeroed here and the product added (beta = 1):
/// OpenBLAS zeroes C for beta = 0 with a pass slower than memset, and the transformer LM's
/// forward products took 15-28% longer that way on two threads (docs/PERF.md, session 17).
/// C's columns past n are not touched either way. `op` names the caller in the error an extent
/// past BLAS's int range raises.
template <typename T>
void blas_gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, const T* a,
               int64_t lda, const T* b, int64_t ldb, bool accumulate, T* c, int64_t ldc,
               const char* op);

}  // namespace loom::cpu
