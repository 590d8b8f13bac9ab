// CUDA against the CPU for dot_product_attention (causal mask, bias, dropout with the same
// threefry mask on both devices), forward and backward.
#include "core/autodiff.h"
#include "core/ops/attention.h"
#include "core/ops/elementwise.h"
#include "core/ops/reduce.h"
#include "tests/support/gpu_compare.h"
#include "tests/support/testing.h"

namespace loom {
namespace {

using testing::expect_gpu_matches;
using testing::test_values;

TEST(AttentionGpu, MatchesCpu) {
  LOOM_REQUIRE_GPU();
  Tensor q = test_values({2, 7, 3, 8}, 1, -1, 1, DType::F32), k = test_values({2, 9, 3, 8}, 2, -1, 1, DType::F32);
  Tensor v = test_values({2, 9, 3, 5}, 3, -1, 1, DType::F32);
  Tensor bias = test_values({3, 7, 9}, 4, -1, 1, DType::F32);
  for (int variant = 0; variant < 3; ++variant) {
    AttentionOptions opt;
    opt.causal = true;
    if (variant >= 1) opt.bias = bias;
    if (variant == 2) {
      opt.dropout_rate = 0.3;
      opt.dropout_key = random::key(11);
    }
    expect_gpu_matches("attention variant " + std::to_string(variant), [opt](const std::vector<Tensor>& in) {
      AttentionOptions o = opt;
      if (o.bias.defined()) o.bias = o.bias.to(in[0].device()).to(in[0].dtype());
      return dot_product_attention(in[0], in[1], in[2], o);
    }, {q, k, v}, 1e-5);
  }
}

}  // namespace
}  // namespace loom
