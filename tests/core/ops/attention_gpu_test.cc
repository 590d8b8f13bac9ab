// CUDA against the CPU for dot_product_attention (causal mask, bias, dropout with the same
// threefry mask on both devices), forward and backward, and the fused kernels against the
// composed path.
#include "core/autodiff.h"
#include "core/ops/attention.h"
#include "core/ops/elementwise.h"
#include "core/ops/reduce.h"
#include "core/random.h"
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

// The fused kernels against the composed path on the CPU (float32, on the same rounded inputs
// for the half types): output and the three gradients, with a broadcast mask (a fully masked
// row included), the causal flag, cross attention with lengths that are not multiples of the
// tiles, and every head dim the kernels take.
TEST(AttentionGpu, FusedMatchesComposed) {
  LOOM_REQUIRE_GPU();
  struct Case {
    int64_t batch, q_len, kv_len, heads, dim;
    bool causal, mask;
  };
  const Case cases[] = {{2, 37, 45, 3, 64, false, true}, {1, 70, 70, 2, 64, true, false},
                        {2, 33, 33, 2, 32, true, true},  {1, 40, 65, 1, 128, false, false},
                        {3, 1, 5, 2, 64, false, true}};
  for (const Case& c : cases) {
    Tensor q = test_values({c.batch, c.q_len, c.heads, c.dim}, 1, -1, 1, DType::F32);
    Tensor k = test_values({c.batch, c.kv_len, c.heads, c.dim}, 2, -1, 1, DType::F32);
    Tensor v = test_values({c.batch, c.kv_len, c.heads, c.dim}, 3, -1, 1, DType::F32);
    Tensor ct = test_values({c.batch, c.q_len, c.heads, c.dim}, 4, -1, 1, DType::F32);
    Tensor mask;
    if (c.mask) {  // per batch element, broadcast over heads; row 0 fully masked
      mask = random::bernoulli(random::key(5), 0.6, {c.batch, 1, c.q_len, c.kv_len});
      Tensor first_row = arange(c.q_len, DType::I32).reshape({1, 1, c.q_len, 1});
      mask = logical_and(mask, not_equal(first_row, scalar(0, DType::I32)));
    }
    for (DType dt : {DType::F32, DType::BF16, DType::F16}) {
      const std::string what = detail::cat("b", c.batch, " q", c.q_len, " kv", c.kv_len, " h",
                                           c.heads, " d", c.dim, c.causal ? " causal" : "",
                                           c.mask ? " mask" : "", " ", dtype_name(dt));
      auto run = [&](Device d, AttentionImplementation impl, DType t) {
        AttentionOptions opt;
        opt.causal = c.causal;
        opt.implementation = impl;
        if (mask.defined()) opt.mask = mask.to(d);
        std::vector<Tensor> leaves;
        for (const Tensor& x : {q, k, v}) leaves.push_back(autograd::make_leaf(x.to(t).to(d), int64_t(leaves.size())));
        autograd::RecordingGuard rec(true);
        Tensor y = dot_product_attention(leaves[0], leaves[1], leaves[2], opt);
        std::vector<Tensor> out{y.detach()};
        for (Tensor& g : autograd::backward(sum(y * ct.to(t).to(d)), leaves)) out.push_back(g);
        for (Tensor& x : out) x = x.to(Device::cpu()).to(DType::F32);
        return out;
      };
      // The reference: composed, float32, on the values rounded to dt (the cotangent too).
      Tensor q0 = q, k0 = k, v0 = v, ct0 = ct;
      q = q.to(dt).to(DType::F32), k = k.to(dt).to(DType::F32), v = v.to(dt).to(DType::F32);
      ct = ct.to(dt).to(DType::F32);
      std::vector<Tensor> ref = run(Device::cpu(), AttentionImplementation::Composed, DType::F32);
      std::vector<Tensor> fused = run(Device::cuda(), AttentionImplementation::Fused, dt);
      q = q0, k = k0, v = v0, ct = ct0;
      const char* names[] = {"out", "dq", "dk", "dv"};
      for (size_t i = 0; i < ref.size(); ++i) {
        if (dt == DType::F32) {
          EXPECT_ALLCLOSE(fused[i], ref[i], 1e-4, 1e-5) << what << " " << names[i];
        } else {
          EXPECT_TRUE(testing::close_in_low_precision(fused[i], ref[i], dt)) << what << " " << names[i];
        }
      }
    }
  }
}

TEST(AttentionGpu, CuDnnMatchesComposed) {
  LOOM_REQUIRE_GPU();
  struct Case {
    int64_t batch, q_len, kv_len, heads, dim;
    bool causal;
  };
  // {1, 40, 100, ..., causal}: cuDNN's top-left causal alignment (key j > query i masked, as
  // the composed jnp.tril) with keys no query sees, whose dk and dv must be zeros.
  const Case cases[] = {{2, 64, 64, 3, 64, true}, {1, 37, 45, 2, 64, false},
                        {2, 128, 128, 4, 128, true}, {1, 100, 100, 2, 32, true},
                        {1, 40, 100, 2, 64, true}};
  for (const Case& c : cases) {
    Tensor q = test_values({c.batch, c.q_len, c.heads, c.dim}, 1, -1, 1, DType::F32);
    Tensor k = test_values({c.batch, c.kv_len, c.heads, c.dim}, 2, -1, 1, DType::F32);
    Tensor v = test_values({c.batch, c.kv_len, c.heads, c.dim}, 3, -1, 1, DType::F32);
    Tensor ct = test_values({c.batch, c.q_len, c.heads, c.dim}, 4, -1, 1, DType::F32);
    for (DType dt : {DType::BF16, DType::F16}) {
      const std::string what = detail::cat("b", c.batch, " q", c.q_len, " kv", c.kv_len, " h",
                                           c.heads, " d", c.dim, c.causal ? " causal" : "", " ",
                                           dtype_name(dt));
      auto run = [&](Device d, AttentionImplementation impl, DType t) {
        AttentionOptions opt;
        opt.causal = c.causal;
        opt.implementation = impl;
        std::vector<Tensor> leaves;
        for (const Tensor& x : {q, k, v})
          leaves.push_back(autograd::make_leaf(x.to(dt).to(DType::F32).to(t).to(d), int64_t(leaves.size())));
        autograd::RecordingGuard rec(true);
        Tensor y = dot_product_attention(leaves[0], leaves[1], leaves[2], opt);
        std::vector<Tensor> out{y.detach()};
        for (Tensor& g : autograd::backward(sum(y * ct.to(dt).to(t).to(d)), leaves)) out.push_back(g);
        for (Tensor& x : out) x = x.to(Device::cpu()).to(DType::F32);
        return out;
      };
      // The reference: composed, float32, on the values rounded to dt (the cotangent too).
      std::vector<Tensor> ref = run(Device::cpu(), AttentionImplementation::Composed, DType::F32);
      std::vector<Tensor> got;
      try {
        got = run(Device::cuda(), AttentionImplementation::CuDnn, dt);
      } catch (const NotImplementedError& e) {
        ADD_FAILURE() << what << ": " << e.what();
        continue;
      }
      const char* names[] = {"out", "dq", "dk", "dv"};
      for (size_t i = 0; i < ref.size(); ++i)
        EXPECT_TRUE(testing::close_in_low_precision(got[i], ref[i], dt)) << what << " " << names[i];
    }
  }
}

}  // namespace
}  // namespace loom
