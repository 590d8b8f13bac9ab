// CUDA against the CPU for the normalisations: fused layer/RMS norm (warp and block rows),
// batch norm (multi-chunk column sums), inference, and the composed group norm; forward and
// backward, float32 and half precision.
#include "core/autodiff.h"
#include "core/ops/elementwise.h"
#include "core/ops/norm.h"
#include "core/ops/reduce.h"
#include "tests/support/gpu_compare.h"
#include "tests/support/testing.h"

namespace loom {
namespace {

using testing::expect_gpu_matches;
using testing::test_values;

TEST(NormGpu, LayerAndRmsNormMatchCpu) {
  LOOM_REQUIRE_GPU();
  for (Shape shape : {Shape{5, 37}, Shape{2, 3, 256}, Shape{3, 1500}, Shape{70, 8}}) {
    int64_t n = shape.back();
    Tensor x = test_values(shape, 1, -2, 3, DType::F32);
    Tensor s = test_values({n}, 2, 0.5, 1.5, DType::F32), b = test_values({n}, 3, -1, 1, DType::F32);
    expect_gpu_matches("layer_norm " + shape_str(shape),
                       [](const std::vector<Tensor>& in) { return layer_norm(in[0], in[1], in[2]); }, {x, s, b}, 1e-5);
    expect_gpu_matches("layer_norm no params " + shape_str(shape),
                       [](const std::vector<Tensor>& in) { return layer_norm(in[0], Tensor(), Tensor()); }, {x}, 1e-5);
    expect_gpu_matches("rms_norm " + shape_str(shape),
                       [](const std::vector<Tensor>& in) { return rms_norm(in[0], in[1]); }, {x, s}, 1e-5);
  }
  // composed paths (a middle axis) run on the GPU through the elementwise/reduce kernels
  Tensor x = test_values({4, 6, 5}, 4, -2, 2, DType::F32);
  expect_gpu_matches("layer_norm axis 1", [](const std::vector<Tensor>& in) {
    return layer_norm(in[0], Tensor(), Tensor(), 1e-6, {1});
  }, {x}, 1e-5);
  // bf16 input with float32 parameters: float32 output (the mixed kernel instantiation)
  Tensor xb = test_values({6, 300}, 5, -2, 2, DType::F32).to(DType::BF16);
  Tensor s = test_values({300}, 6, 0.5, 1.5, DType::F32), b = test_values({300}, 7, -1, 1, DType::F32);
  Tensor cpu = layer_norm(xb, s, b), gpu = layer_norm(xb.to(Device::cuda()), s.to(Device::cuda()), b.to(Device::cuda()));
  EXPECT_EQ(gpu.dtype(), DType::F32);
  EXPECT_ALLCLOSE(gpu, cpu, 1e-5, 1e-5);
  // float64 on the GPU
  Tensor x64 = test_values({3, 50}, 8);
  EXPECT_ALLCLOSE(rms_norm(x64.to(Device::cuda()), Tensor()), rms_norm(x64, Tensor()), 1e-12, 1e-12);
}

TEST(NormGpu, BatchNormMatchesCpu) {
  LOOM_REQUIRE_GPU();
  for (Shape shape : {Shape{4, 3, 3, 5}, Shape{40, 10, 10, 37}, Shape{3, 70}}) {
    int64_t c = shape.back();
    Tensor x = test_values(shape, 9, -1, 3, DType::F32);
    Tensor s = test_values({c}, 10, 0.5, 1.5, DType::F32), b = test_values({c}, 11, -1, 1, DType::F32);
    expect_gpu_matches("batch_norm " + shape_str(shape),
                       [](const std::vector<Tensor>& in) { return batch_norm_train(in[0], in[1], in[2]).y; }, {x, s, b}, 1e-5);
    auto cpu = batch_norm_train(x, s, b);
    auto gpu = batch_norm_train(x.to(Device::cuda()), s.to(Device::cuda()), b.to(Device::cuda()));
    EXPECT_ALLCLOSE(gpu.mean, cpu.mean, 1e-5, 1e-6) << shape_str(shape);
    EXPECT_ALLCLOSE(gpu.var, cpu.var, 1e-5, 1e-6) << shape_str(shape);
    Tensor mu = test_values({c}, 12, -1, 1, DType::F32), var = test_values({c}, 13, 0.5, 2, DType::F32);
    EXPECT_ALLCLOSE(batch_norm_inference(x.to(Device::cuda()), mu.to(Device::cuda()), var.to(Device::cuda()),
                                         s.to(Device::cuda()), b.to(Device::cuda())),
                    batch_norm_inference(x, mu, var, s, b), 1e-5, 1e-5) << shape_str(shape);
  }
  // other reduction axes and the pmean hook go through the composed path
  Tensor x = test_values({4, 3, 5}, 14, -1, 2, DType::F32);
  expect_gpu_matches("batch_norm axes {0, 2}", [](const std::vector<Tensor>& in) {
    return batch_norm_train(in[0], Tensor(), Tensor(), 1e-5, {0, 2}).y;
  }, {x}, 1e-5);
  expect_gpu_matches("batch_norm pmean", [](const std::vector<Tensor>& in) {
    return batch_norm_train(in[0], Tensor(), Tensor(), 1e-5, {}, [](const Tensor& t) { return t; }).y;
  }, {x}, 1e-5);
}

TEST(NormGpu, GroupNormMatchesCpu) {
  LOOM_REQUIRE_GPU();
  Tensor x = test_values({2, 4, 4, 8}, 15, -2, 2, DType::F32);
  Tensor s = test_values({8}, 16, 0.5, 1.5, DType::F32), b = test_values({8}, 17, -1, 1, DType::F32);
  expect_gpu_matches("group_norm", [](const std::vector<Tensor>& in) { return group_norm(in[0], 4, in[1], in[2]); }, {x, s, b}, 1e-5);
}

}  // namespace
}  // namespace loom
