#include "kernels/cpu/gemm.h"

#include <omp.h>

#include <utility>

#include "core/error.h"
#include "kernels/cpu/blas.h"

namespace loom::cpu {
namespace {

// Multiply-adds below which a batch of products is split across threads by batch element.
constexpr int64_t kSmallProduct = int64_t(1) << 21;

template <typename T>
void run(const GemmProblem& p) {
  const int64_t batch = shape_numel(p.batch_shape);
  T* c = static_cast<T*>(p.c);
  if (p.m == 0 || p.n == 0 || batch == 0) return;
  const int64_t ldc = p.c_ld();
  LOOM_INTERNAL_ASSERT(ldc >= p.n && (ldc == p.n || p.batch_shape.empty()));
  LOOM_INTERNAL_ASSERT(!p.addend);  // the GPU's (matmul_bias_add composes on the CPU)
  const T* a = static_cast<const T*>(p.a.data);
  const T* b = static_cast<const T*>(p.b.data);
  // Operand offsets of batch element i (row-major over the batch dims).
  auto offsets = [&](int64_t i) {
    int64_t off_a = 0, off_b = 0;
    for (size_t d = p.batch_shape.size(); d-- > 0;) {
      const int64_t idx = i % p.batch_shape[d];
      i /= p.batch_shape[d];
      off_a += idx * p.a.batch_strides[d];
      off_b += idx * p.b.batch_strides[d];
    }
    return std::pair{off_a, off_b};
  };
  auto one = [&](int64_t i) {
    auto [off_a, off_b] = offsets(i);
    blas_gemm(p.a.trans, p.b.trans, p.m, p.n, p.k, a + off_a, p.a.ld, b + off_b, p.b.ld,
              p.accumulate, c + i * p.m * p.n, ldc, "matmul");
  };
  // Many small products (attention's, one per batch row and head): one per thread, each on one
  // thread (OpenBLAS runs single-threaded inside a parallel region), rather than every product
  // split across the threads with a synchronisation each. Fewer products than threads keep
  // OpenBLAS's own split, which leaves no thread idle.
  if (batch >= omp_get_max_threads() && batch > 1 && p.m * p.n * p.k <= kSmallProduct) {
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < batch; ++i) one(i);
  } else {
    for (int64_t i = 0; i < batch; ++i) one(i);
  }
}

}  // namespace

void gemm(const GemmProblem& p) {
  LOOM_INTERNAL_ASSERT(p.a.batch_strides.size() == p.batch_shape.size() &&
                       p.b.batch_strides.size() == p.batch_shape.size());
  switch (p.dtype) {
    case DType::F32: return run<float>(p);
    case DType::F64: return run<double>(p);
    default:
      LOOM_THROW(DTypeError, "matmul: the CPU GEMM takes float32 or float64, got ",
                 dtype_name(p.dtype));
  }
}

}  // namespace loom::cpu
