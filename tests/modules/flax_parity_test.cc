// Parity with real Flax (tests/golden/flax_modules.json from scripts/golden/gen_flax_modules.py):
// for the same seed every param path and value equals Flax's, and the forward outputs agree.
#include <gtest/gtest.h>

#include "core/ops/elementwise.h"
#include "core/ops/shape.h"
#include "modules/initializers.h"
#include "modules/layers/activation.h"
#include "modules/layers/attention.h"
#include "modules/layers/conv.h"
#include "modules/layers/embedding.h"
#include "modules/layers/linear.h"
#include "modules/layers/normalization.h"
#include "modules/layers/stochastic.h"
#include "modules/models/cnn.h"
#include "tests/modules/flax_golden.h"

namespace loom {
namespace {

using testing::flax_case;
using testing::golden_tensor;
using testing::matches_golden;
using testing::tree_matches_golden;

// Params: uniform-family values are exact; normal-family within a couple of float32 ulps.
constexpr double kParamRtol = 1e-6, kParamAtol = 1e-7;
// Forward outputs (float32 computations in a different order than XLA's).
constexpr double kOutRtol = 1e-5, kOutAtol = 2e-6;

/// init with key(seed) on the case's input, compare the variables and apply's output.
template <class M>
void check_layer(const std::string& name, const M& module) {
  SCOPED_TRACE(name);
  const auto& c = flax_case(name);
  Tensor x = golden_tensor(c.at("input"));
  Tree vars = module.init(random::key(c.at("seed").get<int64_t>()), x);
  EXPECT_TRUE(tree_matches_golden(vars, c.at("variables"), kParamRtol, kParamAtol,
                                  &c.at("variable_paths")));
  Tree flax_vars = testing::golden_tree(c.at("variables"));
  EXPECT_TRUE(matches_golden(module.apply(flax_vars, x), c.at("output"), kOutRtol, kOutAtol));
}

TEST(FlaxParity, Initializers) {
  using namespace nn::initializers;
  std::map<std::string, nn::Initializer> inits = {
      {"zeros", zeros()},
      {"ones", ones()},
      {"constant_m7", constant(-7.0)},
      {"normal", normal()},
      {"normal_2", normal(2.0)},
      {"uniform", uniform()},
      {"uniform_3", uniform(3.0)},
      {"truncated_normal", truncated_normal()},
      {"truncated_normal_1_m1_3", truncated_normal(1.0, -1.0, 3.0)},
      {"lecun_normal", lecun_normal()},
      {"lecun_uniform", lecun_uniform()},
      {"glorot_normal", glorot_normal()},
      {"glorot_uniform", glorot_uniform()},
      {"he_normal", he_normal()},
      {"he_uniform", he_uniform()},
      {"vs_fan_out_normal", variance_scaling(0.5, "fan_out", "normal")},
      {"vs_fan_avg_uniform", variance_scaling(3.0, "fan_avg", "uniform")},
      {"vs_fan_geo_avg_tn", variance_scaling(1.0, FanMode::FanGeoAvg, Distribution::TruncatedNormal)},
      {"vs_embed", variance_scaling(1.0, "fan_in", "normal", {.out_axis = {0}})},
      {"orthogonal", orthogonal()},
      {"orthogonal_2_axis0", orthogonal(2.0, 0)},
  };
  int checked = 0;
  for (const auto& c : testing::flax_golden().at("initializers")) {
    std::string name = c.at("init");
    SCOPED_TRACE(name + " " + c.at("shape").dump());
    ASSERT_TRUE(inits.count(name));
    Tensor t = inits[name](random::key(c.at("seed").get<int64_t>()), c.at("shape").get<Shape>(),
                           DType::F32);
    bool is_orthogonal = name.rfind("orthogonal", 0) == 0;
    // Orthogonal runs its QR in float64 on the host: agreement within rounding, not bits.
    double rtol = is_orthogonal ? 1e-5 : 1e-6, atol = is_orthogonal ? 1e-6 : 1e-7;
    bool exact = name == "zeros" || name == "ones" || name == "constant_m7" ||
                 name.find("uniform") != std::string::npos;
    if (exact) rtol = atol = 0;
    EXPECT_TRUE(matches_golden(t, c.at("expected"), rtol, atol));
    ++checked;
  }
  EXPECT_EQ(checked, 63);
}

TEST(FlaxParity, InitializerErrors) {
  using namespace nn::initializers;
  EXPECT_THROW(lecun_normal()(random::key(0), {5}, DType::F32), ValueError);
  EXPECT_THROW(variance_scaling(1.0, "fan_sideways", "normal"), ValueError);
  EXPECT_THROW(normal()(random::key(0), {2, 2}, DType::I32), DTypeError);
  EXPECT_THROW(orthogonal()(random::key(0), {3}, DType::F32), ValueError);
  auto [fi, fo] = compute_fans({3, 3, 8, 16});
  EXPECT_EQ(fi, 72);
  EXPECT_EQ(fo, 144);
}

TEST(FlaxParity, Dense) {
  check_layer("dense", nn::Dense{.features = 4});
  check_layer("dense_no_bias_3d", nn::Dense{.features = 5, .use_bias = false});
  check_layer("dense_general_axes", nn::DenseGeneral{.features = {2, 3}, .axis = {-2, -1}});
  check_layer("dense_general_heads", nn::DenseGeneral{.features = {2, 4}});
  check_layer("dense_general_batch",
              nn::DenseGeneral{.features = {3}, .axis = {-1}, .batch_dims = {0}});
}

TEST(FlaxParity, Conv) {
  check_layer("conv_same", nn::Conv{.features = 4, .kernel_size = {3, 3}});
  check_layer("conv_valid_strided", nn::Conv{.features = 3, .kernel_size = {3, 2},
                                             .strides = {2, 1}, .padding = Padding::valid()});
  check_layer("conv_dilated_groups", nn::Conv{.features = 4, .kernel_size = {3, 3},
                                              .kernel_dilation = {2}, .feature_group_count = 2});
  check_layer("conv_circular",
              nn::Conv{.features = 2, .kernel_size = {3}, .padding = Padding::circular()});
  check_layer("conv_explicit_no_batch",
              nn::Conv{.features = 2, .kernel_size = {2, 2},
                       .padding = Padding::explicit_pads({{1, 0}, {0, 1}}), .use_bias = false});
  check_layer("conv_transpose_same",
              nn::ConvTranspose{.features = 3, .kernel_size = {3, 3}, .strides = {2, 2}});
  check_layer("conv_transpose_valid",
              nn::ConvTranspose{.features = 2, .kernel_size = {3}, .padding = Padding::valid()});
  check_layer("conv_transpose_circular",
              nn::ConvTranspose{.features = 2, .kernel_size = {3}, .strides = {2},
                                .padding = Padding::circular()});
}

TEST(FlaxParity, Embed) {
  const auto& c = flax_case("embed");
  Tensor ids = golden_tensor(c.at("input"));
  nn::Embed embed{.num_embeddings = 5, .features = 3};
  Tree vars = embed.init(random::key(0), ids);
  EXPECT_TRUE(tree_matches_golden(vars, c.at("variables"), kParamRtol, kParamAtol));
  // The reference's documented values: nn.Embed(5, 3).init(key(0)), row 0.
  EXPECT_ALLCLOSE(slice_axis(vars.at("params/embedding").tensor(), 0, 0, 1).reshape({3}),
                  from_vector<float>({0.04396089f, -0.9328513f, -0.97328115f}, {3}), 1e-6, 1e-7);
  EXPECT_TRUE(matches_golden(embed.apply(vars, ids), c.at("output"), 0, 0));
  Tensor q = golden_tensor(c.at("attend_input"));
  EXPECT_TRUE(matches_golden(embed.apply(vars, &nn::Embed::attend, q), c.at("attend_output"),
                             kOutRtol, kOutAtol));
  EXPECT_THROW(embed.apply(vars, q), DTypeError);  // float ids
}

TEST(FlaxParity, Normalization) {
  check_layer("layer_norm", nn::LayerNorm{});
  check_layer("layer_norm_no_bias_axes",
              nn::LayerNorm{.use_bias = false, .reduction_axes = {1, 2}, .feature_axes = {-1}});
  check_layer("rms_norm", nn::RMSNorm{});
  check_layer("group_norm", nn::GroupNorm{.num_groups = 2});
  check_layer("group_norm_size", nn::GroupNorm{.num_groups = std::nullopt, .group_size = 1});
}

TEST(FlaxParity, BatchNormRunningStatistics) {
  for (auto [name, bn] : {std::pair{"batch_norm_train", nn::BatchNorm{}},
                          std::pair{"batch_norm_train_m09",
                                    nn::BatchNorm{.momentum = 0.9, .epsilon = 1e-3}}}) {
    SCOPED_TRACE(name);
    const auto& c = flax_case(name);
    Tensor x = golden_tensor(c.at("input"));
    Tree vars = bn.init(random::key(0), x);
    // No running update during init: mean 0, var 1.
    EXPECT_TRUE(tree_matches_golden(vars, c.at("variables"), 0, 0, &c.at("variable_paths")));
    auto [y, updates] = bn.apply_mutable(vars, {"batch_stats"}, x);
    EXPECT_TRUE(matches_golden(y, c.at("output"), kOutRtol, kOutAtol));
    EXPECT_TRUE(tree_matches_golden(updates, c.at("updates"), 1e-6, 1e-7));
    // Training mode with immutable batch_stats is the seed's misuse.
    EXPECT_THROW(bn.apply(vars, x), nn::ModifyScopeVariableError);
  }
  const auto& c = flax_case("batch_norm_eval");
  Tensor x = golden_tensor(c.at("input"));
  Tree vars = testing::golden_tree(c.at("variables"));
  EXPECT_TRUE(matches_golden(nn::BatchNorm{.use_running_average = true}.apply(vars, x),
                             c.at("output"), kOutRtol, kOutAtol));
}

struct DenseDropout : nn::Module<DenseDropout> {
  Tensor call(const Tensor& x, bool train) const {
    Tensor h = nn::Dense{.features = 4}(x);
    h = nn::Dropout{.rate = 0.5, .deterministic = !train}(h);
    return nn::Dropout{.rate = 0.25, .broadcast_dims = {0}, .deterministic = !train}(h);
  }
};

TEST(FlaxParity, DropoutMaskEqualsFlax) {
  const auto& c = flax_case("dense_dropout");
  Tensor x = golden_tensor(c.at("input"));
  Tree vars = DenseDropout{}.init(random::key(0), x, false);
  EXPECT_TRUE(tree_matches_golden(vars, c.at("variables"), kParamRtol, kParamAtol));
  EXPECT_TRUE(matches_golden(DenseDropout{}.apply(vars, x, false), c.at("output_eval"), kOutRtol,
                             kOutAtol));
  // The Dropout docstring's numbers (Dense(4) on ones, key(0)): the reference quotes them.
  EXPECT_ALLCLOSE(slice_axis(DenseDropout{}.apply(vars, x, false), 0, 0, 1).reshape({4}),
                  from_vector<float>({-0.17875527f, 1.6255447f, -1.2431065f, -0.02554005f}, {4}),
                  1e-5, 1e-6);
  Tensor y = DenseDropout{}.apply(vars, {.rngs = {{"dropout", random::key(1)}}}, x, true);
  EXPECT_TRUE(matches_golden(y, c.at("output_train"), kOutRtol, kOutAtol));
  EXPECT_THROW(DenseDropout{}.apply(vars, x, true), nn::InvalidRngError);
}

TEST(FlaxParity, Attention) {
  {
    const auto& c = flax_case("mha_causal");
    Tensor x = golden_tensor(c.at("input"));
    nn::MultiHeadDotProductAttention mha{.num_heads = 2, .qkv_features = 8};
    Tree vars = mha.init(random::key(0), x);
    EXPECT_TRUE(tree_matches_golden(vars, c.at("variables"), kParamRtol, kParamAtol,
                                    &c.at("variable_paths")));
    Tensor mask = nn::make_causal_mask(ones({2, 3}));
    EXPECT_EQ(mask.shape(), (Shape{2, 1, 3, 3}));
    EXPECT_TRUE(matches_golden(mha.apply(vars, x, nn::AttentionArgs{.mask = mask}),
                               c.at("output"), kOutRtol, kOutAtol));
  }
  {
    const auto& c = flax_case("mha_cross_dropout");
    Tensor x = golden_tensor(c.at("input")), kv = golden_tensor(c.at("kv"));
    nn::MultiHeadDotProductAttention mha{.num_heads = 2, .out_features = 3, .dropout_rate = 0.5};
    Tree vars = mha.init({{"params", random::key(1)}, {"dropout", random::key(2)}}, x, kv);
    EXPECT_TRUE(tree_matches_golden(vars, c.at("variables"), kParamRtol, kParamAtol,
                                    &c.at("variable_paths")));
    EXPECT_TRUE(matches_golden(mha.apply(vars, {.rngs = {{"dropout", random::key(3)}}}, x, kv),
                               c.at("output"), kOutRtol, kOutAtol));
  }
  {
    const auto& c = flax_case("self_attention_qk_norm");
    Tensor x = golden_tensor(c.at("input"));
    nn::SelfAttention sa{.num_heads = 1, .normalize_qk = true};
    Tree vars = sa.init(random::key(4), x);
    EXPECT_TRUE(tree_matches_golden(vars, c.at("variables"), kParamRtol, kParamAtol,
                                    &c.at("variable_paths")));
    EXPECT_TRUE(matches_golden(sa.apply(vars, x), c.at("output"), kOutRtol, kOutAtol));
  }
}

TEST(FlaxParity, AttentionDecodeCache) {
  const auto& c = flax_case("mha_decode");
  Tensor x = golden_tensor(c.at("input"));
  nn::MultiHeadDotProductAttention dec{.num_heads = 2, .qkv_features = 4, .decode = true};
  Tree vars = dec.init(random::key(5), x);
  EXPECT_TRUE(tree_matches_golden(vars, c.at("variables"), kParamRtol, kParamAtol,
                                  &c.at("variable_paths")));
  Tree state = vars;
  for (int t = 0; t < 3; ++t) {
    SCOPED_TRACE(t);
    auto [y, updates] = dec.apply_mutable(state, {"cache"}, slice_axis(x, 1, t, t + 1));
    EXPECT_TRUE(matches_golden(y, c.at("step_outputs")[size_t(t)], kOutRtol, kOutAtol));
    state.insert("cache", updates["cache"]);
  }
  Tree cache;
  cache.insert("cache", state["cache"]);
  EXPECT_TRUE(tree_matches_golden(cache, c.at("final_cache"), kOutRtol, kOutAtol));
  EXPECT_THROW(dec.apply_mutable(state, {"cache"}, x), ValueError);  // not one position
}

struct TransformerBlock : nn::Module<TransformerBlock> {
  int64_t num_heads = 2;
  Tensor call(const Tensor& x, const Tensor& mask) const {
    Tensor h = nn::LayerNorm{}(x);
    h = nn::MultiHeadDotProductAttention{.num_heads = num_heads}(h, nn::AttentionArgs{.mask = mask});
    Tensor y = x + h;
    h = nn::LayerNorm{}(y);
    h = nn::Dense{.features = 4 * y.dim(-1)}(h);
    h = nn::gelu(h);
    h = nn::Dense{.features = y.dim(-1)}(h);
    return y + h;
  }
};

TEST(FlaxParity, TransformerBlock) {
  const auto& c = flax_case("transformer_block");
  Tensor x = golden_tensor(c.at("input"));
  Tensor mask = nn::make_causal_mask(ones({2, 5}));
  Tree vars = TransformerBlock{}.init(random::key(0), x, mask);
  EXPECT_TRUE(tree_matches_golden(vars, c.at("variables"), kParamRtol, kParamAtol,
                                  &c.at("variable_paths")));
  EXPECT_TRUE(matches_golden(TransformerBlock{}.apply(vars, x, mask), c.at("output"), kOutRtol,
                             kOutAtol));
}

TEST(FlaxParity, ModelZooCNN) {
  // modules/models/cnn.h is the seed's CNN (tests/seed/train_state_test.cc checks its training
  // pattern): Flax's names, params and logits.
  const auto& c = flax_case("cnn");
  Tensor x = golden_tensor(c.at("input"));
  Tree vars = nn::models::CNN{}.init(random::key(0), ones({1, 28, 28, 1}));
  EXPECT_TRUE(tree_matches_golden(vars, c.at("variables"), kParamRtol, kParamAtol,
                                  &c.at("variable_paths")));
  EXPECT_TRUE(matches_golden(nn::models::CNN{}.apply(vars, x), c.at("output"), 1e-4, 1e-5));
}

struct FlaxEncoder : nn::Module<FlaxEncoder> {
  static constexpr std::string_view kModuleName = "Encoder";
  Tensor call(const Tensor& x) const {
    Tensor h = nn::relu(nn::Dense{.features = 5}(x));
    Tensor z = nn::Dense{.features = 3}.named("latents")(h);
    return nn::Dense{.features = 2}(z);
  }
};

struct FlaxOrder : nn::Module<FlaxOrder> {
  Tensor call(const Tensor& x) const {
    auto a = nn::Dense{.features = 4};
    auto b = nn::Dense{.features = 3};
    Tensor y = a(b(x));
    return nn::Dense{.features = 2}(nn::Dense{.features = 5}(y));
  }
};

std::vector<std::string> paths_of(const Tree& t) {
  std::vector<std::string> out;
  for (const auto& [p, v] : t.flatten()) out.push_back(p);
  return out;
}

TEST(FlaxParity, NamingAndOrder) {
  const auto& naming = testing::flax_golden().at("naming");
  Tensor x = testing::flax_pattern({1, 3});
  EXPECT_EQ(paths_of(FlaxEncoder{}.init(random::key(0), x)),
            naming.at("encoder").get<std::vector<std::string>>());
  EXPECT_EQ(paths_of(FlaxOrder{}.init(random::key(0), x)),
            naming.at("order").get<std::vector<std::string>>());
  const auto& c = flax_case("encoder");
  Tree vars = FlaxEncoder{}.init(random::key(0), x);
  EXPECT_TRUE(tree_matches_golden(vars, c.at("variables"), kParamRtol, kParamAtol,
                                  &c.at("variable_paths")));
  EXPECT_TRUE(matches_golden(FlaxEncoder{}.apply(vars, x), c.at("output"), kOutRtol, kOutAtol));
}

}  // namespace
}  // namespace loom
