// kernels/cpu/blas.h, the one call into the system BLAS: C is overwritten without reading it
// (NaNs in it do not leak, as with BLAS's beta = 0), accumulated into with `accumulate`, and
// never written past its n columns; the large-C path splits its zeroing across the threads.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "core/error.h"
#include "kernels/cpu/blas.h"

namespace loom::cpu {
namespace {

// op(A)[i][l] of a row-major A stored as [m, k] (or [k, m] when transposed).
template <typename T>
T at(const std::vector<T>& a, bool trans, int64_t ld, int64_t i, int64_t l) {
  return trans ? a[size_t(l * ld + i)] : a[size_t(i * ld + l)];
}

template <typename T>
void check_product(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, int64_t ldc,
                   bool accumulate) {
  SCOPED_TRACE(::testing::Message() << "m=" << m << " n=" << n << " k=" << k << " ldc=" << ldc
                                    << " ta=" << trans_a << " tb=" << trans_b
                                    << " accumulate=" << accumulate << " bytes=" << sizeof(T));
  const int64_t lda = trans_a ? m : k, ldb = trans_b ? k : n;
  std::vector<T> a(size_t(m * k)), b(size_t(k * n));
  for (size_t i = 0; i < a.size(); ++i) a[i] = T(int64_t(i * 7 % 13) - 6) / T(8);
  for (size_t i = 0; i < b.size(); ++i) b[i] = T(int64_t(i * 5 % 11) - 5) / T(4);
  const T sentinel = T(-123.5);
  const T before = accumulate ? T(0.75) : std::numeric_limits<T>::quiet_NaN();
  std::vector<T> c(size_t(m * ldc), sentinel);
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) c[size_t(i * ldc + j)] = before;
  blas_gemm<T>(trans_a, trans_b, m, n, k, a.data(), lda, b.data(), ldb, accumulate, c.data(), ldc,
               "test");
  int64_t wrong = 0;
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t j = 0; j < ldc; ++j) {
      double want = sentinel;
      if (j < n) {
        want = accumulate ? double(before) : 0.0;
        for (int64_t l = 0; l < k; ++l)
          want += double(at(a, trans_a, lda, i, l)) * double(at(b, trans_b, ldb, l, j));
      }
      // The operands are multiples of 1/32 with few bits: every sum is exact in float too.
      if (double(c[size_t(i * ldc + j)]) != want && ++wrong <= 3)
        ADD_FAILURE() << "C[" << i << "][" << j << "] = " << c[size_t(i * ldc + j)] << ", want "
                      << want;
    }
  }
  EXPECT_EQ(wrong, 0);
}

TEST(Blas, OverwritesWithoutReadingCAndKeepsItsRowPadding) {
  for (bool ta : {false, true})
    for (bool tb : {false, true}) {
      check_product<float>(ta, tb, 5, 7, 3, 7, false);
      check_product<float>(ta, tb, 5, 7, 3, 11, false);
      check_product<double>(ta, tb, 6, 4, 9, 5, false);
    }
}

TEST(Blas, AccumulatesIntoC) {
  check_product<float>(false, true, 5, 7, 3, 9, true);
  check_product<double>(true, false, 6, 4, 9, 4, true);
}

TEST(Blas, ZeroesALargeCAcrossTheThreads) {
  // 512 x 384 floats (768 KiB): past the size whose zeroing is split across the threads.
  check_product<float>(false, false, 512, 384, 4, 384, false);
  check_product<double>(false, false, 300, 300, 2, 300, false);
}

TEST(Blas, AnEmptySumIsZeroOrLeavesCAsItWas) {
  check_product<float>(false, false, 4, 3, 0, 5, false);
  check_product<float>(false, false, 4, 3, 0, 3, true);
}

TEST(Blas, ExtentsPastTheIntRangeAreRefusedBeforeCIsTouched) {
  std::vector<float> a(4, 1.f), b(4, 1.f), c(4, 2.f);
  const int64_t huge = int64_t(INT32_MAX) + 1;
  try {
    blas_gemm<float>(false, false, 1, huge, 1, a.data(), 1, b.data(), huge, false, c.data(), huge,
                     "matmul");
    FAIL() << "no error";
  } catch (const ShapeError& e) {
    EXPECT_NE(std::string(e.what()).find("matmul: GEMM n = 2147483648 exceeds the BLAS int range"),
              std::string::npos)
        << e.what();
  }
  EXPECT_EQ(c, std::vector<float>(4, 2.f));
}

}  // namespace
}  // namespace loom::cpu
