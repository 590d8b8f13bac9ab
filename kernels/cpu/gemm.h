// Batched matrix products on raw pointers. GemmProblem is the description both backends take
// (kernels/cuda/gemm.h uses it too): row-major matrices, each operand possibly stored transposed
// (so a transposed view costs a flag, not a copy), with arbitrary per-batch-dim strides (so
// broadcast batch dims cost a zero stride, not a copy).
#pragma once
#include <cstdint>

#include "core/dtype.h"
#include "core/shape.h"

namespace loom {

/// One operand: per batch element a row-major matrix, or the transpose of one.
struct GemmOperand {
  const void* data = nullptr;
  bool trans = false;   // A is stored as [k, m], B as [n, k] (row-major), and read transposed
  int64_t ld = 1;       // elements between consecutive stored rows (>= stored columns)
  Shape batch_strides;  // elements per step of each batch dim; 0 broadcasts
  // Every stored row may be read up to ld elements (its storage holds them), values unknown:
  // the GPU may then pad a free extent (A's m, B's n) in place, the extra rows or columns of C
  // being dropped, rather than copy the operand.
  bool pitch_readable = false;
  // Also the values past the stored columns up to ld are zeros (Storage::has_zero_row_padding):
  // the GPU may pad the contracted extent in place.
  bool zero_padded = false;
};

/// C[b] = op(A[b]) @ op(B[b]) for every index b of batch_shape; C is contiguous
/// [batch_shape..., m, n] and A, B and C all have `dtype`. An unbatched C may have rows `ldc`
/// elements apart instead (ldc > n): columns [n, ldc) are then scratch the product may write.
struct GemmProblem {
  DType dtype = DType::F32;
  int64_t m = 0, n = 0, k = 0;
  Shape batch_shape;
  GemmOperand a, b;
  void* c = nullptr;
  int64_t ldc = 0;  // 0: n (contiguous)
  bool accumulate = false;  // C += op(A) @ op(B) (beta = 1): C holds an earlier sum to add to
  // With accumulate, on the GPU: the earlier sum is read from here instead (laid out as C, same
  // ldc), and C receives addend + op(A) @ op(B): a residual added in the product (null: C's own
  // values). The CPU GEMM takes none.
  const void* addend = nullptr;

  int64_t c_ld() const { return ldc ? ldc : n; }
};

/// Whether the GPU runs a product padded to 16-byte extents (kernels/cuda/gemm.cc): cuBLASLt's
/// vector kernels need them, and for a product this large a pass over its operands costs less
/// than the element-aligned kernels.
inline bool pads_extents(const GemmProblem& p) {
  return 16 % dtype_size(p.dtype) == 0 &&
         2.0 * double(p.m) * double(p.n) * double(p.k) >= double(int64_t(1) << 30);
}

/// The pitch at which a product's output rows are stored: n, or for an unbatched product that
/// pads_extents, the next 16-byte multiple (GPT-2's vocabulary of 50257: 50264 in bfloat16).
/// The GPU then writes C in place and reads it, and a gradient stored at its pitch, as operands
/// of the backward products without padded copies.
inline int64_t output_row_pitch(const GemmProblem& p) {
  if (!p.batch_shape.empty() || !pads_extents(p)) return p.n;
  const int64_t unit = 16 / int64_t(dtype_size(p.dtype));
  return (p.n + unit - 1) / unit * unit;
}

/// What follows the product in a fused GEMM (bias has length n and is added to every row).
enum class Epilogue { None, Bias, BiasRelu, BiasGelu };

}  // namespace loom

namespace loom::cpu {

/// OpenBLAS cblas_sgemm / cblas_dgemm (float32 and float64; other dtypes throw DTypeError).
/// Called from the calling thread only, never inside an OpenMP region: OpenBLAS runs its own
/// thread pool for large products.
void gemm(const GemmProblem& p);

}  // namespace loom::cpu
