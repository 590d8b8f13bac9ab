// dot_product_attention: Flax goldens (causal mask, padding mask + bias, dropout), a float64
// loop reference, finite-difference gradients and error cases.
#include <cmath>

#include "core/autodiff.h"
#include "core/ops/attention.h"
#include "core/ops/elementwise.h"
#include "core/ops/reduce.h"
#include "core/ops/shape.h"
#include "tests/support/testing.h"

namespace loom {
namespace {

using testing::check_gradients;
using testing::golden_tensor;
using testing::test_values;
using testing::vjp;
using Fn = std::function<Tensor(const std::vector<Tensor>&)>;

const nlohmann::json& golden(const std::string& name) { return testing::golden_case("nn_ops.json", name); }

void check_golden(const std::string& name, const AttentionOptions& opt) {
  const auto& c = golden(name);
  Tensor q = golden_tensor(c["inputs"]["q"]), k = golden_tensor(c["inputs"]["k"]), v = golden_tensor(c["inputs"]["v"]);
  Fn f = [&](const std::vector<Tensor>& in) { return dot_product_attention(in[0], in[1], in[2], opt); };
  EXPECT_ALLCLOSE(f({q, k, v}), golden_tensor(c["outputs"]["y"]), 1e-5, 1e-6) << name;
  auto g = vjp(f, {q, k, v}, golden_tensor(c["cotangent"]));
  EXPECT_ALLCLOSE(g[0], golden_tensor(c["grads"]["q"]), 1e-4, 1e-6) << name << " dq";
  EXPECT_ALLCLOSE(g[1], golden_tensor(c["grads"]["k"]), 1e-4, 1e-6) << name << " dk";
  EXPECT_ALLCLOSE(g[2], golden_tensor(c["grads"]["v"]), 1e-4, 1e-6) << name << " dv";
}

TEST(Attention, MatchesFlax) {
  AttentionOptions causal;
  causal.causal = true;
  check_golden("attention_causal", causal);
  const auto& c = golden("attention_mask_bias");
  AttentionOptions masked;
  masked.mask = golden_tensor(c["inputs"]["mask"]).to(DType::Bool);
  masked.bias = golden_tensor(c["inputs"]["bias"]);
  check_golden("attention_mask_bias", masked);
  for (const char* name : {"attention_dropout", "attention_dropout_full"}) {
    const auto& d = golden(name);
    AttentionOptions drop;
    drop.causal = true;
    drop.dropout_rate = d["dropout_rate"].get<double>();
    drop.dropout_key = random::Key{d["key"][0].get<uint32_t>(), d["key"][1].get<uint32_t>()};
    drop.broadcast_dropout = d["broadcast_dropout"].get<bool>();
    check_golden(name, drop);
  }
}

/// Attention for one batch element by loops in double: q [Q, H, D], k [K, H, D], v [K, H, E].
Tensor reference_attention(const Tensor& q, const Tensor& k, const Tensor& v, bool causal) {
  int64_t nq = q.shape()[0], h = q.shape()[1], d = q.shape()[2], nk = k.shape()[0], e = v.shape()[2];
  auto qv = q.to_vector<double>(), kv = k.to_vector<double>(), vv = v.to_vector<double>();
  std::vector<double> out(size_t(nq * h * e), 0.0);
  for (int64_t hi = 0; hi < h; ++hi)
    for (int64_t i = 0; i < nq; ++i) {
      std::vector<double> logit(static_cast<size_t>(nk));
      double m = -INFINITY, z = 0;
      for (int64_t j = 0; j < nk; ++j) {
        double s = 0;
        for (int64_t t = 0; t < d; ++t) s += qv[size_t((i * h + hi) * d + t)] * kv[size_t((j * h + hi) * d + t)];
        logit[size_t(j)] = causal && j > i ? -1e300 : s / std::sqrt(double(d));
        m = std::max(m, logit[size_t(j)]);
      }
      for (double& l : logit) z += (l = std::exp(l - m));
      for (int64_t j = 0; j < nk; ++j)
        for (int64_t t = 0; t < e; ++t) out[size_t((i * h + hi) * e + t)] += logit[size_t(j)] / z * vv[size_t((j * h + hi) * e + t)];
    }
  return from_vector(out, {nq, h, e});
}

TEST(Attention, MatchesLoopReference) {
  Tensor q = test_values({4, 2, 3}, 1, -2, 2), k = test_values({6, 2, 3}, 2, -2, 2), v = test_values({6, 2, 5}, 3);
  EXPECT_ALLCLOSE(dot_product_attention(q, k, v), reference_attention(q, k, v, false), 1e-12, 1e-13);
  AttentionOptions causal;
  causal.causal = true;  // q_len 4 < kv_len 6: position i sees j <= i (jnp.tril of [4, 6])
  EXPECT_ALLCLOSE(dot_product_attention(q, k, v, causal), reference_attention(q, k, v, true), 1e-12, 1e-13);
  // with leading batch dims each element is independent
  Tensor qb = stack({q, q * 0.5}, 0), kb = stack({k, k}, 0), vb = stack({v, v * 2.0}, 0);
  Tensor out = dot_product_attention(qb, kb, vb, causal);
  EXPECT_EQ(out.shape(), (Shape{2, 4, 2, 5}));
  EXPECT_ALLCLOSE(slice_axis(out, 0, 1, 2).reshape({4, 2, 5}), reference_attention(q * 0.5, k, v * 2.0, true), 1e-12, 1e-13);
  // the weights sum to one and respect a mask
  AttentionOptions masked;
  masked.mask = less(arange(6, DType::F32), full({}, 2.0)).reshape({1, 1, 6});  // only kv 0, 1
  Tensor w = dot_product_attention_weights(q, k, masked);
  EXPECT_EQ(w.shape(), (Shape{2, 4, 6}));
  EXPECT_ALLCLOSE(sum(w, {-1}), ones({2, 4}, DType::F64), 1e-14, 0);
  EXPECT_ALLCLOSE(slice_axis(w, -1, 2, 6), zeros({2, 4, 4}, DType::F64), 0, 0);
  // bf16 operands give bf16 output close to the float reference
  Tensor o16 = dot_product_attention(q.to(DType::BF16), k.to(DType::BF16), v.to(DType::BF16), causal);
  EXPECT_EQ(o16.dtype(), DType::BF16);
  EXPECT_ALLCLOSE(o16, reference_attention(q, k, v, true), 3e-2, 3e-2);
}

TEST(Attention, Gradients) {
  Tensor q = test_values({1, 3, 2, 2}, 4, -1, 1), k = test_values({1, 4, 2, 2}, 5, -1, 1);
  Tensor v = test_values({1, 4, 2, 3}, 6), w = test_values({1, 3, 2, 3}, 7);
  Tensor bias = test_values({2, 3, 4}, 8);
  AttentionOptions opt;
  opt.causal = true;
  opt.bias = bias;
  EXPECT_TRUE(check_gradients([&](const std::vector<Tensor>& in) {
    return sum(dot_product_attention(in[0], in[1], in[2], opt) * w);
  }, {q, k, v}));
  AttentionOptions drop;
  drop.dropout_rate = 0.5;
  drop.dropout_key = random::key(3);
  drop.broadcast_dropout = false;
  EXPECT_TRUE(check_gradients([&](const std::vector<Tensor>& in) {
    return sum(dot_product_attention(in[0], in[1], in[2], drop) * w);
  }, {q, k, v}));
}

TEST(Attention, FusedImplementationSaysWhyItCannotRun) {
  Tensor q = ones({1, 4, 2, 64}), k = ones({1, 4, 2, 64}), v = ones({1, 4, 2, 64});
  AttentionOptions opt;
  opt.implementation = AttentionImplementation::Fused;
  try {
    (void)dot_product_attention(q, k, v, opt);
    FAIL() << "expected NotImplementedError";
  } catch (const NotImplementedError& e) {
    std::string msg = e.what();
    EXPECT_NE(msg.find("CUDA only"), std::string::npos) << msg;
    EXPECT_NE(msg.find("[1, 4, 2, 64]"), std::string::npos) << msg;
  }
}

TEST(Attention, TheProcessDefaultIsAPreference) {
  // Calls the preferred implementation cannot take (here: any on the CPU) run composed, as a
  // model's float32 init does under loom_bench --attention cudnn.
  Tensor q = random::normal(random::key(1), {1, 4, 2, 8});
  Tensor k = random::normal(random::key(2), {1, 4, 2, 8});
  Tensor v = random::normal(random::key(3), {1, 4, 2, 8});
  AttentionOptions causal;
  causal.causal = true;
  const Tensor composed = dot_product_attention(q, k, v, causal);
  for (auto impl : {AttentionImplementation::Fused, AttentionImplementation::CuDnn}) {
    set_attention_implementation(impl);
    EXPECT_ALLCLOSE(dot_product_attention(q, k, v, causal), composed, 0, 0);
    AttentionOptions named = causal;
    named.implementation = impl;
    EXPECT_THROW((void)dot_product_attention(q, k, v, named), NotImplementedError);
  }
  set_attention_implementation(AttentionImplementation::Composed);
}

TEST(Attention, CuDnnImplementationSaysWhyItCannotRun) {
  Tensor q = ones({1, 4, 2, 64}), k = ones({1, 4, 2, 64}), v = ones({1, 4, 2, 64});
  AttentionOptions opt;
  opt.implementation = AttentionImplementation::CuDnn;
  EXPECT_THROW_WITH((void)dot_product_attention(q, k, v, opt), NotImplementedError,
                    "the cuDNN implementation cannot take", "[1, 4, 2, 64]", "CUDA only");
  Tensor empty = ones({0, 4, 2, 64}), one = ones({1, 1, 2, 64});
  EXPECT_THROW_WITH((void)dot_product_attention(empty, empty, empty, opt), NotImplementedError,
                    "no empty operands");
  EXPECT_THROW_WITH((void)dot_product_attention(one, one, one, opt), NotImplementedError,
                    "lengths of 1");
  opt.mask = ones({1, 2, 4, 4}, DType::Bool);
  EXPECT_THROW_WITH((void)dot_product_attention(q, k, v, opt), NotImplementedError, "no mask");
}

TEST(Attention, Errors) {
  auto expect_msg = [](auto&& fn, std::initializer_list<const char*> parts) {
    try {
      fn();
      ADD_FAILURE() << "expected an error";
    } catch (const Error& e) {
      std::string msg = e.what();
      for (const char* p : parts) EXPECT_NE(msg.find(p), std::string::npos) << msg;
    }
  };
  Tensor q = zeros({2, 4, 3, 8}), k = zeros({2, 5, 3, 8}), v = zeros({2, 5, 3, 8});
  expect_msg([&] { (void)dot_product_attention(q, zeros({2, 5, 2, 8}), v); },
             {"dot_product_attention", "[2, 4, 3, 8]", "[2, 5, 2, 8]"});
  EXPECT_THROW((void)dot_product_attention(q, zeros({2, 5, 2, 8}), v), ShapeError);
  EXPECT_THROW((void)dot_product_attention(q, k, zeros({2, 6, 3, 8})), ShapeError);
  EXPECT_THROW((void)dot_product_attention(q, zeros({3, 5, 3, 8}), zeros({3, 5, 3, 8})), ShapeError);
  EXPECT_THROW((void)dot_product_attention(zeros({4, 8}), zeros({4, 8}), zeros({4, 8})), ShapeError);
  AttentionOptions bad_mask;
  bad_mask.mask = ones({4, 5});
  EXPECT_THROW((void)dot_product_attention(q, k, v, bad_mask), DTypeError);
  AttentionOptions wrong_shape;
  wrong_shape.mask = ones({4, 4}, DType::Bool);
  EXPECT_THROW((void)dot_product_attention(q, k, v, wrong_shape), ShapeError);
  AttentionOptions no_key;
  no_key.dropout_rate = 0.1;
  expect_msg([&] { (void)dot_product_attention(q, k, v, no_key); }, {"dot_product_attention", "dropout_key"});
  EXPECT_THROW((void)dot_product_attention(zeros({2, 4, 3, 8}, DType::I32), k, v), DTypeError);
}

}  // namespace
}  // namespace loom
