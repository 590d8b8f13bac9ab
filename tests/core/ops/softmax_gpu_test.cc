// CUDA against the CPU for softmax / log_softmax (warp-per-row, block-per-row and column
// kernels) and gelu, forward and backward.
#include "core/autodiff.h"
#include "core/ops/elementwise.h"
#include "core/ops/reduce.h"
#include "core/ops/softmax.h"
#include "tests/support/gpu_compare.h"
#include "tests/support/testing.h"

namespace loom {
namespace {

using testing::expect_gpu_matches;
using testing::test_values;

TEST(SoftmaxGpu, MatchesCpu) {
  LOOM_REQUIRE_GPU();
  for (Shape shape : {Shape{5, 37}, Shape{3, 1}, Shape{2, 3, 1024}, Shape{3, 2000}, Shape{130, 7}}) {
    Tensor x = test_values(shape, 1, -4, 4, DType::F32);
    for (bool log : {false, true}) {
      std::string what = std::string(log ? "log_softmax " : "softmax ") + shape_str(shape);
      expect_gpu_matches(what, [log](const std::vector<Tensor>& in) { return log ? log_softmax(in[0]) : softmax(in[0]); }, {x});
    }
  }
  // inner axes: one thread per column
  Tensor x = test_values({3, 40, 5}, 2, -4, 4, DType::F32);
  for (int64_t axis : {0, 1}) {
    expect_gpu_matches("softmax axis " + std::to_string(axis), [axis](const std::vector<Tensor>& in) { return softmax(in[0], axis); }, {x});
    expect_gpu_matches("log_softmax axis " + std::to_string(axis), [axis](const std::vector<Tensor>& in) { return log_softmax(in[0], axis); }, {x});
  }
}

TEST(SoftmaxGpu, Float64AndEdgeCases) {
  LOOM_REQUIRE_GPU();
  Tensor x = test_values({4, 33}, 3, -4, 4);
  EXPECT_ALLCLOSE(softmax(x.to(Device::cuda())), softmax(x), 1e-12, 1e-15);
  EXPECT_ALLCLOSE(log_softmax(x.to(Device::cuda()), 0), log_softmax(x, 0), 1e-12, 1e-15);
  const float inf = INFINITY;
  Tensor masked = from_vector<float>({0, -inf, 0, -inf, -inf, -inf}, {2, 3});
  EXPECT_ALLCLOSE(softmax(masked.to(Device::cuda())), softmax(masked), 0, 0);  // NaN row matches
  EXPECT_EQ(softmax(zeros({0, 5}, DType::F32, Device::cuda())).shape(), (Shape{0, 5}));
}

TEST(ActivationsGpu, GeluMatchesCpu) {
  LOOM_REQUIRE_GPU();
  Tensor x = test_values({3, 41}, 4, -5, 5, DType::F32);
  expect_gpu_matches("gelu", [](const std::vector<Tensor>& in) { return gelu(in[0]); }, {x});
  expect_gpu_matches("gelu exact", [](const std::vector<Tensor>& in) { return gelu(in[0], false); }, {x});
}

}  // namespace
}  // namespace loom
