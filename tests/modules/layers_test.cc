// Layer behaviour beyond Flax parity (tests/modules/flax_parity_test.cc): error messages,
// Sequential, activations, BatchNorm's cross-replica hook, masks, tabulate, gradients.
#include <gtest/gtest.h>

#include <cmath>

#include "core/grad.h"
#include "core/ops/elementwise.h"
#include "core/ops/linalg.h"
#include "core/ops/reduce.h"
#include "core/ops/shape.h"
#include "modules/layers/activation.h"
#include "modules/layers/attention.h"
#include "modules/layers/conv.h"
#include "modules/layers/embedding.h"
#include "modules/layers/linear.h"
#include "modules/layers/normalization.h"
#include "modules/layers/sequential.h"
#include "modules/layers/stochastic.h"
#include "modules/tabulate.h"
#include "tests/support/testing.h"

namespace loom {
namespace {

using testing::test_values;

template <class M, class... A>
Tensor init_apply(const M& m, const A&... args) {
  Tree vars = m.init(random::key(0), args...);
  return m.apply(vars, args...);
}

TEST(Layers, ErrorsNameTheModuleAndShapes) {
  struct Net : nn::Module<Net> {
    Tensor call(const Tensor& x) const { return nn::Conv{.features = 4, .kernel_size = {3, 3}}(x); }
  };
  EXPECT_THROW_WITH(Net{}.init(random::key(0), ones({4, 4})), ShapeError, "Conv at /Conv_0",
                    "[4, 4]");
  EXPECT_THROW_WITH(init_apply(nn::Dense{}, ones({2, 3})), ValueError, "Dense at /",
                    "features must be positive");
  EXPECT_THROW_WITH(init_apply(nn::Conv{.features = 3, .kernel_size = {3}, .feature_group_count = 2},
                               ones({1, 5, 4})),
                    ValueError, "feature_group_count 2");
  EXPECT_THROW_WITH(init_apply(nn::DenseGeneral{.features = {2}, .batch_dims = {1}}, ones({2, 3, 4})),
                    ValueError, "batch_dims [1]", "consecutive");
  EXPECT_THROW_WITH(init_apply(nn::GroupNorm{.num_groups = 3}, ones({2, 4})), ValueError,
                    "GroupNorm at /", "(3)", "(4)");
  EXPECT_THROW_WITH(init_apply(nn::GroupNorm{.num_groups = 2, .group_size = 2}, ones({2, 4})),
                    ValueError, "either num_groups or group_size");
  EXPECT_THROW_WITH(init_apply(nn::Embed{.num_embeddings = 3, .features = 2}, ones({2})),
                    DTypeError, "Embed at /", "float32");
  EXPECT_THROW_WITH(init_apply(nn::MultiHeadDotProductAttention{.num_heads = 3}, ones({1, 2, 4})),
                    ValueError, "(4)", "number of heads (3)");
  EXPECT_THROW_WITH(init_apply(nn::Dropout{.rate = 1.5}, ones({2})), ValueError, "rate");
  EXPECT_THROW_WITH(init_apply(nn::Sequential{}, ones({2})), ValueError, "Empty Sequential");
}

// residual + Dense(x) in one call: the same parameters and values as the separate ops, for
// Dense (with and without a bias or an activation) and DenseGeneral (a Dense over the trailing
// axes, which the GPU fuses, and a batched kernel, which adds after).
TEST(Layers, DenseWithAResidualAddsIt) {
  Tensor x = test_values({2, 3, 4}, 3), r = test_values({2, 3, 5}, 4);
  for (nn::Dense dense : {nn::Dense{.features = 5}, nn::Dense{.features = 5, .use_bias = false},
                          nn::Dense{.features = 5, .activation = nn::DenseActivation::Relu}}) {
    Tree vars = dense.init(random::key(0), x);
    EXPECT_TRUE(dense.init(random::key(0), x, r).same_structure(vars));
    EXPECT_ALLCLOSE(dense.apply(vars, x, r), r + dense.apply(vars, x), 1e-12, 1e-12);
    Tensor row = test_values({5}, 7);  // a residual that broadcasts, as the add's
    EXPECT_ALLCLOSE(dense.apply(vars, x, row), row + dense.apply(vars, x), 1e-12, 1e-12);
  }
  Tensor heads = test_values({2, 3, 2, 4}, 5);
  for (nn::DenseGeneral dense : {nn::DenseGeneral{.features = {5}, .axis = {-2, -1}},
                                 nn::DenseGeneral{.features = {5}, .batch_dims = {0}}}) {
    Tensor y = dense.init_with_output(random::key(0), heads).first;
    Tree vars = dense.init(random::key(0), heads);
    Tensor res = test_values(y.shape(), 6);
    EXPECT_ALLCLOSE(dense.apply(vars, heads, res), res + dense.apply(vars, heads), 1e-12, 1e-12);
  }
}

TEST(Layers, SequentialNamesAndSharing) {
  // Built outside any body: layers_<index>, as Flax's top-level Sequential.
  nn::Sequential mlp{.layers = {nn::Dense{.features = 4}, nn::relu, nn::Dense{.features = 2}}};
  Tensor x = test_values({3, 5}, 1).to(DType::F32);
  Tree vars = mlp.init(random::key(0), x);
  EXPECT_EQ(vars["params"].keys(), (std::vector<std::string>{"layers_0", "layers_2"}));
  Tensor expected =
      matmul(relu(matmul(x, vars.at("params/layers_0/kernel").tensor()) +
                  vars.at("params/layers_0/bias").tensor()),
             vars.at("params/layers_2/kernel").tensor()) +
      vars.at("params/layers_2/bias").tensor();
  EXPECT_ALLCLOSE(mlp.apply(vars, x), expected, 1e-6, 1e-6);
  // Built in a body: the layers are the parent's children (Flax: Dense_0, Dense_1 beside an
  // empty Sequential_0); a lambda layer works too.
  struct Net : nn::Module<Net> {
    Tensor call(const Tensor& x) const {
      return nn::Sequential{.layers = {nn::Dense{.features = 4},
                                       [](const Tensor& h) { return nn::gelu(h); },
                                       nn::Dense{.features = 2}}}(x);
    }
  };
  Tree v2 = Net{}.init(random::key(0), x);
  EXPECT_EQ(v2["params"].keys(), (std::vector<std::string>{"Dense_0", "Dense_1"}));
}

TEST(Layers, ActivationsFollowJaxNn) {
  Tensor x = from_vector<double>({-3, -1.5, -0.5, 0, 0.5, 2, 4}, {7});
  auto ref = [&](double (*f)(double)) {
    std::vector<double> v = x.to_vector<double>();
    for (double& e : v) e = f(e);
    return from_vector(v, {7});
  };
  EXPECT_ALLCLOSE(nn::celu(x), ref([](double v) { return std::max(v, 0.0) + std::expm1(std::min(v, 0.0)); }), 1e-12, 1e-12);
  EXPECT_ALLCLOSE(nn::selu(x), ref([](double v) {
                    return 1.0507009873554804934193349852946 *
                           (v > 0 ? v : 1.6732632423543772848170429916717 * std::expm1(v));
                  }), 1e-12, 1e-12);
  EXPECT_ALLCLOSE(nn::hard_tanh(x), ref([](double v) { return std::clamp(v, -1.0, 1.0); }), 0, 0);
  EXPECT_ALLCLOSE(nn::hard_sigmoid(x), ref([](double v) { return std::clamp(v + 3, 0.0, 6.0) / 6; }), 1e-15, 0);
  EXPECT_ALLCLOSE(nn::hard_silu(x), ref([](double v) { return v * std::clamp(v + 3, 0.0, 6.0) / 6; }), 1e-15, 1e-15);
  EXPECT_ALLCLOSE(nn::soft_sign(x), ref([](double v) { return v / (std::abs(v) + 1); }), 1e-15, 0);
  Tensor pairs = from_vector<double>({1, 2, 0.5, -1}, {1, 4});
  EXPECT_ALLCLOSE(nn::glu(pairs), from_vector<double>({1 / (1 + std::exp(-0.5)), 2 / (1 + std::exp(1.0))}, {1, 2}), 1e-12, 0);
  Tensor s = nn::standardize(from_vector<double>({1, 2, 3, 4}, {1, 4}));
  EXPECT_NEAR(sum(s).item<double>(), 0.0, 1e-12);
  // PReLU: one learned slope.
  Tree vars = nn::PReLU{}.init(random::key(0), x);
  EXPECT_EQ(vars.at("params/negative_slope").tensor().shape(), Shape{});
  EXPECT_ALLCLOSE(nn::PReLU{}.apply(vars, x), ref([](double v) { return v >= 0 ? v : 0.01 * v; }), 1e-7, 1e-9);
}

TEST(Layers, BatchNormCrossReplicaHook) {
  Tensor x = test_values({4, 3}, 2).to(DType::F32);
  Tree vars = nn::BatchNorm{.axis_name = "batch"}.init(random::key(0), x);  // init: no reducer
  EXPECT_THROW_WITH(nn::BatchNorm{.axis_name = "batch"}.apply_mutable(vars, {"batch_stats"}, x),
                    ValueError, "axis_name \"batch\"", "set_axis_reducer");
  // Two "replicas" of which this is one: the other has the same stats shifted by +1.
  int calls = 0;
  nn::set_axis_reducer("batch", [&](const Tensor& stats, int64_t count) {
    ++calls;
    EXPECT_EQ(count, 4);  // the examples behind each statistic
    return stats;  // a world of one replica: the mean is the tensor itself
  });
  auto [y, updates] = nn::BatchNorm{.axis_name = "batch"}.apply_mutable(vars, {"batch_stats"}, x);
  auto [y0, updates0] = nn::BatchNorm{}.apply_mutable(vars, {"batch_stats"}, x);
  EXPECT_EQ(calls, 1);
  EXPECT_ALLCLOSE(y, y0, 1e-6, 1e-7);
  EXPECT_TRUE(tree_allclose(updates, updates0));
  nn::set_axis_reducer("batch", {});
  EXPECT_THROW(nn::axis_reducer("batch"), ValueError);
}

TEST(Layers, BatchNormNonLastAxisAndOverride) {
  Tensor x = test_values({2, 3, 4}, 5).to(DType::F32);
  nn::BatchNorm bn{.axis = {1}};
  Tree vars = bn.init(random::key(0), x);
  EXPECT_EQ(vars.at("batch_stats/mean").tensor().shape(), (Shape{3}));
  auto [y, updates] = bn.apply_mutable(vars, {"batch_stats"}, x);
  // Reference: per channel 1 over axes 0 and 2.
  Tensor mu = mean(x, {0, 2}, true);
  Tensor var = mean(square(x - mu), {0, 2}, true);
  EXPECT_ALLCLOSE(y, (x - mu) * rsqrt(var + 1e-5), 1e-5, 1e-5);
  EXPECT_ALLCLOSE(updates.at("batch_stats/mean").tensor(), mu.reshape({3}) * 0.01, 1e-5, 1e-7);
  // call(x, use_running_average) overrides the field: evaluation with the updated stats.
  struct Eval : nn::Module<Eval> {
    Tensor call(const Tensor& x) const { return nn::BatchNorm{.axis = {1}}(x, true); }
  };
  Tree ev;
  ev.set("params/BatchNorm_0", vars["params"]);
  ev.set("batch_stats/BatchNorm_0", updates["batch_stats"]);
  Tensor m = updates.at("batch_stats/mean").tensor().reshape({1, 3, 1});
  Tensor v = updates.at("batch_stats/var").tensor().reshape({1, 3, 1});
  EXPECT_ALLCLOSE(Eval{}.apply(ev, x), (x - m) * rsqrt(v + 1e-5), 1e-5, 1e-6);
}

TEST(Layers, BatchNormResidualRelu) {
  Tensor x = test_values({2, 3, 3, 4}, 6).to(DType::F32), r = test_values({2, 3, 3, 4}, 7).to(DType::F32);
  nn::BatchNorm bn{};
  Tree vars = bn.init(random::key(0), x);
  vars.set("params/scale", test_values({4}, 8, -1, 1.5).to(DType::F32));
  vars.set("params/bias", test_values({4}, 9).to(DType::F32));
  // training: the fused epilogue equals relu(residual + norm(x)) with the same statistics update
  auto [y, updates] = bn.apply_mutable(vars, {"batch_stats"}, x, r, true);
  auto [y0, updates0] = bn.apply_mutable(vars, {"batch_stats"}, x);
  EXPECT_ALLCLOSE(y, nn::relu(r + y0), 1e-6, 1e-6);
  EXPECT_TRUE(tree_allclose(updates, updates0));
  auto [y_add, updates_add] = bn.apply_mutable(vars, {"batch_stats"}, x, r, false);
  EXPECT_ALLCLOSE(y_add, r + y0, 1e-6, 1e-6);
  EXPECT_TRUE(tree_allclose(updates_add, updates0));
  // evaluation composes the ops; a bf16 compute dtype casts before the add, as Flax
  nn::BatchNorm eval{.use_running_average = true};
  EXPECT_ALLCLOSE(eval.apply(vars, x, r, true), nn::relu(r + eval.apply(vars, x)), 0, 0);
  nn::BatchNorm half{.dtype = DType::BF16};
  Tensor xb = x.to(DType::BF16), rb = r.to(DType::BF16);
  auto [yb, ub] = half.apply_mutable(vars, {"batch_stats"}, xb, rb, true);
  auto [yb0, ub0] = half.apply_mutable(vars, {"batch_stats"}, xb);
  EXPECT_EQ(yb.dtype(), DType::BF16);
  EXPECT_ALLCLOSE(yb.to(DType::F32), nn::relu(rb + yb0).to(DType::F32), 0, 0);
}

TEST(Layers, MasksAndDeterministicAttention) {
  Tensor tokens = from_vector<int32_t>({5, 7, 0, 3, 0, 0}, {2, 3});
  Tensor pad = nn::make_attention_mask(tokens, tokens);  // [2, 1, 3, 3], false where padding
  EXPECT_EQ(pad.shape(), (Shape{2, 1, 3, 3}));
  EXPECT_EQ(pad.dtype(), DType::Bool);
  Tensor both = nn::combine_masks({pad, nn::make_causal_mask(tokens), Tensor()});
  std::vector<bool> b = both.to_vector<bool>();
  EXPECT_TRUE(b[0]);   // batch 0, q 0, k 0
  EXPECT_FALSE(b[1]);  // k 1 > q 0 (causal)
  EXPECT_TRUE(b[3]);   // q 1, k 0
  EXPECT_FALSE(b[8]);  // q 2 is padding
  EXPECT_FALSE(nn::combine_masks({}).defined());
  // Dropout in attention needs a dropout rng unless deterministic.
  nn::MultiHeadDotProductAttention mha{.num_heads = 2, .dropout_rate = 0.1};
  Tensor x = test_values({2, 3, 4}, 3).to(DType::F32);
  Tree vars = mha.init(random::key(0), x);
  EXPECT_THROW(mha.apply(vars, x), nn::InvalidRngError);
  EXPECT_NO_THROW(mha.apply(vars, x, nn::AttentionArgs{.deterministic = true}));
  EXPECT_NO_THROW(mha.apply(vars, x, nn::AttentionArgs{.dropout_rng = random::key(1)}));
  // Sowing the weights: [batch, heads, q, k], rows sum to one.
  auto [y, inter] = mha.apply_mutable(vars, {"intermediates"}, x,
                                      nn::AttentionArgs{.mask = both, .deterministic = true,
                                                        .sow_weights = true});
  Tensor w = inter.at("intermediates/attention_weights/0").tensor();
  EXPECT_EQ(w.shape(), (Shape{2, 2, 3, 3}));
  EXPECT_ALLCLOSE(slice_axis(sum(w, {-1}), 2, 0, 2), ones({2, 2, 2}), 1e-6, 1e-6);
  // causal = true is make_causal_mask without the tensor, alone and with another mask.
  EXPECT_ALLCLOSE(mha.apply(vars, x, nn::AttentionArgs{.causal = true, .deterministic = true}),
                  mha.apply(vars, x, nn::AttentionArgs{.mask = nn::make_causal_mask(tokens), .deterministic = true}),
                  0, 0);
  EXPECT_ALLCLOSE(mha.apply(vars, x, nn::AttentionArgs{.mask = pad, .causal = true, .deterministic = true}),
                  mha.apply(vars, x, nn::AttentionArgs{.mask = both, .deterministic = true}), 0, 0);
  nn::MultiHeadDotProductAttention cached{.num_heads = 2, .decode = true};
  Tree cvars = cached.init(random::key(0), x);
  EXPECT_THROW_WITH(cached.apply(cvars, x, nn::AttentionArgs{.causal = true}), ValueError,
                    "causal with decode");
}

TEST(Layers, GradientsThroughLayers) {
  struct Net : nn::Module<Net> {
    Tensor call(const Tensor& x) const {
      Tensor h = nn::Conv{.features = 3, .kernel_size = {2}}(x);   // [2, 4, 3]
      h = nn::LayerNorm{}(nn::gelu(h));
      h = nn::SelfAttention{.num_heads = 1}(h, nn::AttentionArgs{.mask = nn::make_causal_mask(ones({2, 4}))});
      h = nn::GroupNorm{.num_groups = 1}(h);
      return nn::DenseGeneral{.features = {2}, .axis = {-2, -1}}(h);
    }
  };
  Tensor x = test_values({2, 4, 2}, 9);
  Tree vars = Net{}.init(random::key(0), x.to(DType::F32));
  Tree params = tree_map([](const Tensor& p) { return p.to(DType::F64); }, vars["params"]);
  EXPECT_TRUE(testing::check_gradients(
      [&](const std::vector<Tensor>& in) {
        return sum(square(Net{}.apply(nn::variables({{"params", params.unflatten(in)}}), x)));
      },
      params.leaves()));
}

// Dense's activation is the activation of Dense's output, values and gradients (on CUDA the
// product's epilogue computes it: tests/core/ops/linalg_gpu_test.cc).
TEST(Layers, DenseActivationIsTheActivationOfTheOutput) {
  Tensor x = test_values({3, 4}, 21, -2, 2);
  Tensor w = test_values({3, 5}, 22);
  for (bool use_bias : {true, false})
    for (auto [act, f] : {std::pair{nn::DenseActivation::Relu, &nn::relu},
                          std::pair{nn::DenseActivation::Gelu, +[](const Tensor& t) { return nn::gelu(t); }}}) {
      nn::Dense fused{.features = 5, .use_bias = use_bias, .activation = act};
      nn::Dense plain{.features = 5, .use_bias = use_bias};
      Tree params = plain.init(random::key(0), x)["params"];
      // float64 for the finite differences; a bias away from 0
      params = tree_map([](const Tensor& p) { return p.to(DType::F64) + 0.1; }, params);
      auto loss = [&](const nn::Dense& d, const auto& act_of) {
        return [&](const Tree& p) {
          return sum(act_of(d.apply(nn::variables({{"params", p}}), x)) * w);
        };
      };
      auto identity = [](const Tensor& t) { return t; };
      auto [fused_value, fused_grads] = value_and_grad(loss(fused, identity))(params);
      auto [plain_value, plain_grads] = value_and_grad(loss(plain, f))(params);
      const std::string what = std::string(use_bias ? "bias " : "") + (act == nn::DenseActivation::Relu ? "relu" : "gelu");
      EXPECT_ALLCLOSE(fused_value, plain_value, 1e-12, 1e-12) << what;
      ASSERT_TRUE(fused_grads.same_structure(plain_grads)) << what;
      const std::vector<Tensor> fused_leaves = fused_grads.leaves(), plain_leaves = plain_grads.leaves();
      for (size_t i = 0; i < fused_leaves.size(); ++i)
        EXPECT_ALLCLOSE(fused_leaves[i], plain_leaves[i], 1e-12, 1e-12) << what;
      EXPECT_TRUE(testing::check_gradients(
          [&](const std::vector<Tensor>& in) { return loss(fused, identity)(params.unflatten(in)); },
          params.leaves()))
          << what;
    }
}

TEST(Layers, TabulateShowsCallsVariablesAndTotals) {
  struct Block : nn::Module<Block> {
    Tensor call(const Tensor& x) const {
      return nn::relu(nn::BatchNorm{}(nn::Dense{.features = 4}(x)));
    }
  };
  struct Net : nn::Module<Net> {
    Tensor call(const Tensor& x) const {
      Block b;
      return nn::Dense{.features = 2}(b(b(x)));  // one block called twice
    }
  };
  std::string t = nn::tabulate(Net{}, random::key(0), ones({3, 4}));
  for (const char* part : {"Net Summary", " path ", " module ", " inputs ", " outputs ", " params ",
                           " batch_stats\n", "Block_0/Dense_0 ", "Block_0/BatchNorm_0 ",
                           "kernel: float32[4,4]", "mean: float32[4]", "20 (80 B)",
                           "Total params: 38 (152 B)", "Total batch_stats: 8 (32 B)"})
    EXPECT_NE(t.find(part), std::string::npos) << "missing '" << part << "' in:\n" << t;
  // The second call of Block_0 is a row of its own, without repeating the variables.
  size_t first = t.find(" Block_0 "), second = t.find(" Block_0 ", first + 1);
  EXPECT_NE(second, std::string::npos);
  EXPECT_EQ(t.find("kernel: float32[4,4]"), t.rfind("kernel: float32[4,4]"));
}

TEST(Layers, InitPlacesVariablesOnTheInputsDevice) {
  // CPU inputs: CPU variables (the GPU case is in layers_gpu_test.cc).
  Tree vars = nn::Dense{.features = 2}.init(random::key(0), ones({1, 3}));
  EXPECT_TRUE(vars.at("params/kernel").tensor().device().is_cpu());
}

}  // namespace
}  // namespace loom
