// The autotuning switches (core/autotune.h): set and restored by scope; the CPU's convolutions
// and products do not depend on them (only cuDNN's and cuBLASLt's algorithm choices do:
// conv_gpu_test.cc, linalg_gpu_test.cc).
#include <gtest/gtest.h>

#include "core/autotune.h"
#include "core/ops/conv.h"
#include "core/ops/linalg.h"
#include "tests/support/testing.h"

namespace loom {
namespace {

TEST(Autotune, ConvSwitchSetAndRestored) {
  EXPECT_FALSE(conv_autotune());
  {
    ConvAutotuneScope on;
    EXPECT_TRUE(conv_autotune());
    {
      ConvAutotuneScope off(false);
      EXPECT_FALSE(conv_autotune());
    }
    EXPECT_TRUE(conv_autotune());
  }
  EXPECT_FALSE(conv_autotune());
  EXPECT_FALSE(set_conv_autotune(true));
  EXPECT_TRUE(set_conv_autotune(false));
}

TEST(Autotune, GemmSwitchSetAndRestored) {
  EXPECT_FALSE(gemm_autotune());
  {
    GemmAutotuneScope on;
    EXPECT_TRUE(gemm_autotune());
    EXPECT_FALSE(conv_autotune());  // the two switches are separate
    {
      GemmAutotuneScope off(false);
      EXPECT_FALSE(gemm_autotune());
    }
    EXPECT_TRUE(gemm_autotune());
  }
  EXPECT_FALSE(gemm_autotune());
  EXPECT_FALSE(set_gemm_autotune(true));
  EXPECT_TRUE(set_gemm_autotune(false));
}

TEST(Autotune, CpuConvolutionsAreTheSame) {
  Tensor x = testing::test_values({2, 6, 6, 3}, 1, -1, 1, DType::F32);
  Tensor w = testing::test_values({3, 3, 3, 4}, 2, -1, 1, DType::F32);
  Tensor plain = conv(x, w);
  ConvAutotuneScope on;
  EXPECT_EQ(conv(x, w).to_vector<float>(), plain.to_vector<float>());
}

TEST(Autotune, CpuProductsAreTheSame) {
  Tensor a = testing::test_values({5, 7}, 3, -1, 1, DType::F32);
  Tensor b = testing::test_values({7, 4}, 4, -1, 1, DType::F32);
  Tensor plain = matmul(a, b);
  GemmAutotuneScope on;
  EXPECT_EQ(matmul(a, b).to_vector<float>(), plain.to_vector<float>());
}

}  // namespace
}  // namespace loom
