// CUDA against the CPU for dropout: bit-identical masks (threefry on the device) and gradients.
#include "core/autodiff.h"
#include "core/ops/dropout.h"
#include "core/ops/elementwise.h"
#include "core/ops/reduce.h"
#include "tests/support/gpu_compare.h"
#include "tests/support/testing.h"

namespace loom {
namespace {

using testing::expect_gpu_matches;
using testing::test_values;

TEST(DropoutGpu, SameMaskAsCpu) {
  LOOM_REQUIRE_GPU();
  Tensor x = test_values({8, 33, 5}, 1, -1, 1, DType::F32);
  for (Axes bdims : {Axes{}, Axes{0}, Axes{1, 2}}) {
    for (double rate : {0.1, 0.5, 0.9}) {
      random::Key key = random::key(int64_t(rate * 100) + int64_t(bdims.size()));
      Tensor cpu = dropout(x, rate, key, bdims);
      Tensor gpu = dropout(x.to(Device::cuda()), rate, key, bdims);
      EXPECT_ALLCLOSE(gpu, cpu, 0, 0) << "rate " << rate;
      Tensor c16 = dropout(x.to(DType::BF16), rate, key, bdims);
      EXPECT_ALLCLOSE(dropout(x.to(DType::BF16).to(Device::cuda()), rate, key, bdims), c16, 0, 0);
    }
  }
  expect_gpu_matches("dropout grad", [](const std::vector<Tensor>& in) { return dropout(in[0], 0.4, random::key(9), {1}); }, {x});
}

}  // namespace
}  // namespace loom
