// CUDA against the CPU for softmax / log_softmax (register rows, warp-per-row, block-per-row and
// column kernels), masked_softmax and gelu, forward and backward.
#include "core/autodiff.h"
#include "core/ops/elementwise.h"
#include "core/ops/reduce.h"
#include "core/ops/shape.h"
#include "core/ops/softmax.h"
#include "core/random.h"
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

// The fused mask (read through broadcast strides) against the CPU's where + softmax, forward
// and backward, warp and block rows, with a fully masked row.
TEST(SoftmaxGpu, MaskedSoftmaxMatchesCpu) {
  LOOM_REQUIRE_GPU();
  struct Case {
    Shape x, mask;
  };
  // rows of 256 and 1024 take the register kernels, the others the general ones
  for (const Case& c : {Case{{2, 3, 6, 6}, {1, 1, 6, 6}}, Case{{2, 3, 5, 7}, {2, 1, 5, 7}},
                        Case{{4, 1500}, {1500}}, Case{{3, 9}, {3, 9}},
                        Case{{3, 4, 256}, {1, 4, 256}}, Case{{5, 1024}, {1024}}}) {
    Tensor x = test_values(c.x, 1, -4, 4, DType::F32);
    Tensor mask = random::bernoulli(random::key(3), 0.7, c.mask);
    if (c.mask == Shape{1, 1, 6, 6}) mask = tril(ones({6, 6}, DType::Bool)).reshape(c.mask);
    if (c.mask == Shape{3, 9}) mask = logical_and(mask, from_vector<bool>({true, false, true}, {3, 1}));
    Tensor w = test_values(c.x, 2, -1, 1, DType::F32);
    for (DType dt : {DType::F32, DType::BF16}) {
      const std::string what = shape_str(c.x) + " mask " + shape_str(c.mask) + " " + std::string(dtype_name(dt));
      auto run = [&](Device d) {
        Tensor leaf = autograd::make_leaf(x.to(dt).to(d), 0);
        autograd::RecordingGuard rec(true);
        Tensor y = masked_softmax(leaf, mask.to(d), -3.0e38);
        Tensor g = autograd::backward(sum(y * w.to(dt).to(d)), {leaf})[0];
        return std::pair{y.detach().to(Device::cpu()).to(DType::F32), g.to(Device::cpu()).to(DType::F32)};
      };
      auto [y_cpu, g_cpu] = run(Device::cpu());
      auto [y_gpu, g_gpu] = run(Device::cuda());
      const double tol = dt == DType::F32 ? 1e-5 : 1e-2;
      EXPECT_ALLCLOSE(y_gpu, y_cpu, tol, tol * 1e-1) << what;
      EXPECT_ALLCLOSE(g_gpu, g_cpu, tol, tol * 1e-1) << what << " grad";
    }
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
