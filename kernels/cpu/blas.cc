#include "kernels/cpu/blas.h"

#include <cblas.h>
#include <omp.h>

#include <cstring>
#include <type_traits>

#include "core/error.h"
#include "kernels/cpu/openblas_kernels.h"

namespace loom::cpu {
namespace {

// BLAS takes int leading dimensions and sizes.
int blas_int(int64_t v, const char* op, const char* what) {
  LOOM_CHECK(v >= 0 && v <= int64_t(INT32_MAX), ShapeError, op, ": GEMM ", what, " = ", v,
             " exceeds the BLAS int range");
  return int(v);
}

// Bytes of C above which its zeroing is split across the threads (when not already in a
// parallel region): below it a thread's memset is shorter than waking the others.
constexpr int64_t kParallelZeroBytes = int64_t(1) << 19;

template <typename T>
void zero_rows(T* c, int64_t m, int64_t n, int64_t ldc) {
  const size_t row_bytes = size_t(n) * sizeof(T);
  if (ldc == n) {
    const int64_t total = m * n;
    if (int64_t(total * sizeof(T)) < kParallelZeroBytes || omp_in_parallel()) {
      std::memset(c, 0, size_t(total) * sizeof(T));
      return;
    }
#pragma omp parallel
    {
      const int64_t threads = omp_get_num_threads(), t = omp_get_thread_num();
      const int64_t begin = total * t / threads, end = total * (t + 1) / threads;
      std::memset(c + begin, 0, size_t(end - begin) * sizeof(T));
    }
    return;
  }
  for (int64_t r = 0; r < m; ++r) std::memset(c + r * ldc, 0, row_bytes);
}

}  // namespace

template <typename T>
void blas_gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, const T* a,
               int64_t lda, const T* b, int64_t ldb, bool accumulate, T* c, int64_t ldc,
               const char* op) {
  blas_kernels();  // OpenBLAS's kernels settled before its first product (at load already)
  if (m == 0 || n == 0) return;
  // Every extent is checked before C is touched.
  const int im = blas_int(m, op, "m"), in = blas_int(n, op, "n"), ik = blas_int(k, op, "k");
  const int ilda = blas_int(lda, op, "lda"), ildb = blas_int(ldb, op, "ldb");
  const int ildc = blas_int(ldc, op, "ldc");
  if (!accumulate) zero_rows(c, m, n, ldc);
  if (k == 0) return;  // an empty sum
  auto* gemm = [] {
    if constexpr (std::is_same_v<T, float>)
      return cblas_sgemm;
    else
      return cblas_dgemm;
  }();
  gemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans,
       im, in, ik, T(1), a, ilda, b, ildb, T(1), c, ildc);
}

template void blas_gemm<float>(bool, bool, int64_t, int64_t, int64_t, const float*, int64_t,
                               const float*, int64_t, bool, float*, int64_t, const char*);
template void blas_gemm<double>(bool, bool, int64_t, int64_t, int64_t, const double*, int64_t,
                                const double*, int64_t, bool, double*, int64_t, const char*);

}  // namespace loom::cpu
