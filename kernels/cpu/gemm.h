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
};

/// C[b] = op(A[b]) @ op(B[b]) for every index b of batch_shape; C is contiguous
/// [batch_shape..., m, n] and A, B and C all have `dtype`.
struct GemmProblem {
  DType dtype = DType::F32;
  int64_t m = 0, n = 0, k = 0;
  Shape batch_shape;
  GemmOperand a, b;
  void* c = nullptr;
};

/// What follows the product in a fused GEMM (bias has length n and is added to every row).
enum class Epilogue { None, Bias, BiasRelu, BiasGelu };

}  // namespace loom

namespace loom::cpu {

/// OpenBLAS cblas_sgemm / cblas_dgemm (float32 and float64; other dtypes throw DTypeError).
/// Called from the calling thread only, never inside an OpenMP region: OpenBLAS runs its own
/// thread pool for large products.
void gemm(const GemmProblem& p);

}  // namespace loom::cpu
