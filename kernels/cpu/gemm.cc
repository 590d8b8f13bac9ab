#include "kernels/cpu/gemm.h"

#include <cblas.h>
#include <omp.h>

#include <cstring>
#include <utility>

#include "core/error.h"

namespace loom::cpu {
namespace {

// BLAS takes int leading dimensions and sizes.
int blas_int(int64_t v, const char* what) {
  LOOM_CHECK(v >= 0 && v <= int64_t(INT32_MAX), ShapeError, "matmul: ", what, " = ", v,
             " exceeds the BLAS int range");
  return int(v);
}

// Multiply-adds below which a batch of products is split across threads by batch element.
constexpr int64_t kSmallProduct = int64_t(1) << 21;

template <typename T, typename Gemm>
void run(const GemmProblem& p, Gemm gemm) {
  int64_t batch = shape_numel(p.batch_shape);
  T* c = static_cast<T*>(p.c);
  if (p.m == 0 || p.n == 0 || batch == 0) return;
  const int64_t ldc = p.c_ld();
  LOOM_INTERNAL_ASSERT(ldc >= p.n && (ldc == p.n || p.batch_shape.empty()));
  LOOM_INTERNAL_ASSERT(!p.addend);  // the GPU's (matmul_bias_add composes on the CPU)
  if (p.k == 0) {  // an empty sum; BLAS would also give zeros, but not every BLAS for every beta
    if (!p.accumulate)
      for (int64_t r = 0; r < batch * p.m; ++r) std::memset(c + r * ldc, 0, size_t(p.n) * sizeof(T));
    return;
  }
  int m = blas_int(p.m, "m"), n = blas_int(p.n, "n"), k = blas_int(p.k, "k");
  int lda = blas_int(p.a.ld, "lda"), ldb = blas_int(p.b.ld, "ldb"), ldc_int = blas_int(ldc, "ldc");
  CBLAS_TRANSPOSE ta = p.a.trans ? CblasTrans : CblasNoTrans;
  CBLAS_TRANSPOSE tb = p.b.trans ? CblasTrans : CblasNoTrans;
  const T* a = static_cast<const T*>(p.a.data);
  const T* b = static_cast<const T*>(p.b.data);
  const T beta = T(p.accumulate ? 1 : 0);
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
    gemm(CblasRowMajor, ta, tb, m, n, k, T(1), a + off_a, lda, b + off_b, ldb, beta,
         c + i * p.m * p.n, ldc_int);
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
    case DType::F32: return run<float>(p, cblas_sgemm);
    case DType::F64: return run<double>(p, cblas_dgemm);
    default:
      LOOM_THROW(DTypeError, "matmul: the CPU GEMM takes float32 or float64, got ",
                 dtype_name(p.dtype));
  }
}

}  // namespace loom::cpu
