// The WMT encoder-decoder against real Flax (flax_models_wmt.msgpack from
// scripts/golden/gen_flax_models.py): init (paths, order, values), logits, loss, gradients and
// dropout, with separate embeddings + "logitdense" and with shared embeddings + attend; plus
// padding/causality properties, errors and a few SGD steps.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "core/grad.h"
#include "core/ops/elementwise.h"
#include "core/ops/loss.h"
#include "core/ops/reduce.h"
#include "core/ops/shape.h"
#include "modules/models/wmt_transformer.h"
#include "tests/support/testing.h"
#include "train/io/flax_msgpack.h"

namespace loom {
namespace {

using nn::models::wmt::Transformer;
using nn::models::wmt::TransformerConfig;

TransformerConfig tiny(bool shared) {
  return TransformerConfig{.vocab_size = 32, .output_vocab_size = 32, .share_embeddings = shared,
                           .logits_via_embedding = shared, .emb_dim = 8, .num_heads = 2,
                           .num_layers = 2, .qkv_dim = 8, .mlp_dim = 16, .max_len = 16,
                           .deterministic = true};
}

const Tree& golden() {
  static const Tree g =
      train::load_flax_msgpack(std::string(LOOM_GOLDEN_DIR) + "/flax_models_wmt.msgpack");
  return g;
}

::testing::AssertionResult trees_close(const Tree& actual, const Tree& expected, double rtol,
                                       double atol) {
  auto a = actual.flatten();
  if (a.size() != expected.leaf_count())
    return ::testing::AssertionFailure() << a.size() << " leaves vs " << expected.leaf_count();
  for (const auto& [path, leaf] : a) {
    if (!expected.has_path(path)) return ::testing::AssertionFailure() << "no golden " << path;
    auto r = testing::allclose(leaf, expected.at(path).tensor(), rtol, atol);
    if (!r) return ::testing::AssertionFailure() << path << ": " << r.message();
  }
  return ::testing::AssertionSuccess();
}

void check_variant(const std::string& variant) {
  SCOPED_TRACE(variant);
  const Tree& g = golden();
  const Tree& c = g[variant];
  auto meta = testing::load_golden("flax_models.json").at("wmt").at(variant);
  Tensor inputs = g["inputs"].tensor(), targets = g["targets"].tensor();
  Transformer model{.config = tiny(variant == "shared")};

  Tree init = model.init(random::key(0), inputs, targets);
  std::vector<std::string> paths;
  for (const auto& [p, t] : init.flatten()) paths.push_back(p);
  EXPECT_EQ(paths, meta.at("init_paths").get<std::vector<std::string>>());
  EXPECT_TRUE(trees_close(init, c["init"], 1e-6, 1e-7));

  auto [loss, logits, grads] = value_and_grad_aux([&](const Tree& p) {
    Tensor out = model.apply(nn::variables({{"params", p}}), inputs, targets);
    return std::pair{mean(softmax_cross_entropy_with_integer_labels(out, targets)), out.detach()};
  })(c["init"]["params"]);
  EXPECT_TRUE(testing::allclose(logits, c["logits"].tensor(), 1e-4, 1e-5));
  EXPECT_NEAR(loss.item<double>(), meta.at("loss").get<double>(), 1e-5);
  EXPECT_TRUE(trees_close(grads, c["grads"], 1e-3, 1e-6));

  Transformer drop = model;
  drop.config.deterministic = false;
  Tensor d = drop.apply(c["init"], {.rngs = {{"dropout", random::key(1)}}}, inputs, targets);
  EXPECT_TRUE(testing::allclose(d, c["logits_dropout"].tensor(), 1e-4, 1e-5));
}

TEST(WmtTransformer, SeparateEmbeddingsEqualFlax) { check_variant("separate"); }
TEST(WmtTransformer, SharedEmbeddingsEqualFlax) { check_variant("shared"); }

TEST(WmtTransformer, SinusoidalTableIsFlaxs) {
  Tensor t = nn::models::wmt::detail::sinusoidal_table(4, 6);
  EXPECT_EQ(t.shape(), (Shape{1, 4, 6}));
  std::vector<float> v = t.to_vector<float>();
  // d = 6: half 3, scale_factor -log(1e4) / 2; position 2, feature 1: sin(2 * 1e-2).
  EXPECT_NEAR(v[2 * 6 + 1], std::sin(2 * 0.01), 1e-7);
  EXPECT_NEAR(v[2 * 6 + 3 + 1], std::cos(2 * 0.01), 1e-7);
  EXPECT_NEAR(v[3 * 6 + 0], std::sin(3.0), 1e-7);
}

TEST(WmtTransformer, PaddingAndCausality) {
  Transformer model{.config = tiny(false)};
  Tensor inputs = from_vector(std::vector<int32_t>{5, 9, 2, 0}, {1, 4});
  Tensor targets = from_vector(std::vector<int32_t>{3, 8, 21, 4}, {1, 4});
  Tree vars = model.init(random::key(0), inputs, targets);
  Tensor base = model.apply(vars, inputs, targets);
  // A later target changes no earlier logit (targets are shifted right, so position t sees
  // targets < t).
  Tensor t2 = from_vector(std::vector<int32_t>{3, 8, 7, 4}, {1, 4});
  Tensor changed = model.apply(vars, inputs, t2);
  EXPECT_TRUE(testing::allclose(slice_axis(changed, 1, 0, 3), slice_axis(base, 1, 0, 3), 1e-6,
                                1e-6));
  EXPECT_FALSE(testing::allclose(slice_axis(changed, 1, 3, 4), slice_axis(base, 1, 3, 4), 1e-4,
                                 1e-4));
}

TEST(WmtTransformer, Errors) {
  Transformer model{.config = tiny(false)};
  Tensor ok = from_vector(std::vector<int32_t>{1, 2}, {1, 2});
  EXPECT_THROW(model.init(random::key(0), from_vector(std::vector<int32_t>{1, 2}, {2}), ok),
               ShapeError);
  EXPECT_THROW(model.init(random::key(0), from_vector(std::vector<int32_t>(17, 1), {1, 17}), ok),
               ShapeError);
  TransformerConfig bad = tiny(true);
  bad.output_vocab_size = 40;
  EXPECT_THROW(Transformer{.config = bad}.init(random::key(0), ok, ok), ValueError);
}

TEST(WmtTransformer, SgdStepsLowerTheLoss) {
  Transformer model{.config = tiny(true)};
  Tensor inputs = from_vector(std::vector<int32_t>{5, 9, 2, 30, 7, 1, 1, 4}, {2, 4});
  Tensor targets = from_vector(std::vector<int32_t>{3, 8, 21, 2, 6, 6, 2, 17}, {2, 4});
  Tree params = model.init(random::key(0), inputs, targets)["params"];
  std::vector<double> losses;
  for (int step = 0; step < 5; ++step) {
    auto [loss, grads] = value_and_grad([&](const Tree& p) {
      return mean(softmax_cross_entropy_with_integer_labels(
          model.apply(nn::variables({{"params", p}}), inputs, targets), targets));
    })(params);
    losses.push_back(loss.item<double>());
    params = tree_map([](const Tensor& p, const Tensor& g) { return p - g * 0.5; }, params, grads);
  }
  EXPECT_LT(losses.back(), losses.front() - 0.1);
}

}  // namespace
}  // namespace loom
