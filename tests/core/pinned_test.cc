// Pinned host tensors where no GPU is visible: ordinary host memory that behaves like any CPU
// tensor (tests/core/pinned_gpu_test.cc covers real page-locked memory and async copies).
#include <gtest/gtest.h>

#include "core/ops/shape.h"
#include "core/tensor.h"
#include "tests/support/testing.h"

namespace loom {
namespace {

TEST(Pinned, WithoutAGpuPinnedTensorsAreOrdinaryHostTensors) {
  if (cuda_available()) GTEST_SKIP() << "a GPU is visible: pinned_gpu_test covers this";
  Tensor t = Tensor::empty_pinned({2, 3}, DType::F32);
  EXPECT_EQ(t.device(), Device::cpu());
  EXPECT_EQ(t.shape(), (Shape{2, 3}));
  EXPECT_FALSE(t.is_pinned());
  Tensor x = arange(6, DType::F32).reshape({2, 3});
  Tensor p = transpose(x).pin_memory();  // non-contiguous in, contiguous copy out
  EXPECT_TRUE(p.is_contiguous());
  EXPECT_EQ(p.to_vector<float>(), (std::vector<float>{0, 3, 1, 4, 2, 5}));
}

TEST(Pinned, EmptyPinnedValidatesTheShape) {
  EXPECT_THROW_WITH(Tensor::empty_pinned({2, -1}), ShapeError, "negative dimension", "[2, -1]");
}

}  // namespace
}  // namespace loom
