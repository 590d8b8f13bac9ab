// TransformerLM: GPT-2-style structure and counts (GPT-2 small: 124,439,808), causality, scan and
// remat variants agreeing with the plain stack, dropout, errors, and SGD steps lowering the loss.
#include <gtest/gtest.h>

#include "core/grad.h"
#include "core/ops/elementwise.h"
#include "core/ops/loss.h"
#include "core/ops/reduce.h"
#include "core/ops/shape.h"
#include "modules/models/transformer.h"
#include "tests/support/testing.h"

namespace loom {
namespace {

using nn::models::TransformerLM;

TransformerLM tiny() {
  return TransformerLM{.vocab_size = 32, .max_len = 8, .num_layers = 2, .num_heads = 2,
                       .d_model = 16};
}

Tensor tokens_of(std::vector<int32_t> v, int64_t batch) {
  int64_t len = int64_t(v.size()) / batch;
  return from_vector(v, {batch, len});
}

TEST(TransformerLM, StructureAndCountEqualFlax) {
  // GPT-2 small's structure (12 layers, 12 heads, context 1024) at d_model 96 and vocabulary 512;
  // Flax's count from jax.eval_shape is in the golden.
  TransformerLM lm{.vocab_size = 512, .max_len = 1024, .num_layers = 12, .num_heads = 12,
                   .d_model = 96};
  Tree p = lm.init(random::key(0), tokens_of({1, 2, 3, 4}, 1))["params"];
  EXPECT_EQ(p.total_size(),
            testing::load_golden("flax_models.json").at("gpt2_d96_v512_param_count").get<int64_t>());
  EXPECT_EQ(p.keys().front(), "wte");
  EXPECT_EQ(p.keys().back(), "ln_f");
  EXPECT_EQ(p.keys().size(), 15u);
  EXPECT_EQ(p.at("wpe/embedding").tensor().shape(), (Shape{1024, 96}));
  EXPECT_EQ(p.at("h_11/attn/query/kernel").tensor().shape(), (Shape{96, 12, 8}));
  EXPECT_EQ(p.at("h_11/attn/out/kernel").tensor().shape(), (Shape{12, 8, 96}));
  EXPECT_EQ(p.at("h_11/c_fc/kernel").tensor().shape(), (Shape{96, 384}));
  EXPECT_EQ(p.at("h_11/c_proj/bias").tensor().shape(), (Shape{96}));
  EXPECT_FALSE(p.has_path("lm_head"));  // tied to wte
}

// GPT-2 small: a 1-layer model at full width, plus 11 more blocks of the same size (the full
// init is ~0.5 GB and slow on the CPU). Several seconds: disabled by default.
TEST(TransformerLM, DISABLED_Gpt2SmallCount) {
  TransformerLM one = nn::models::gpt2_small();
  one.num_layers = 1;
  Tree p1 = one.init(random::key(0), tokens_of({1, 2, 3, 4}, 1))["params"];
  EXPECT_EQ(p1.at("wte/embedding").tensor().shape(), (Shape{50257, 768}));
  int64_t block = p1["h_0"].total_size();
  EXPECT_EQ(block, 7087872);
  EXPECT_EQ(p1.total_size() + 11 * block, 124439808);
}

TEST(TransformerLM, IsCausal) {
  TransformerLM lm = tiny();
  Tensor a = tokens_of({1, 2, 3, 4, 5, 6}, 1), b = tokens_of({1, 2, 3, 9, 9, 9}, 1);
  Tree vars = lm.init(random::key(0), a);
  Tensor la = lm.apply(vars, a), lb = lm.apply(vars, b);
  EXPECT_EQ(la.shape(), (Shape{1, 6, 32}));
  EXPECT_TRUE(testing::allclose(slice_axis(la, 1, 0, 3), slice_axis(lb, 1, 0, 3), 1e-6, 1e-6));
  EXPECT_FALSE(testing::allclose(slice_axis(la, 1, 3, 4), slice_axis(lb, 1, 3, 4), 1e-3, 1e-3));
}

// The blocks fold their residual adds into the output projections' products when dropout is
// off, but capture_intermediates still sees Flax's submodule outputs: attn's and c_proj's
// without the residual (block output = x + attn + c_proj), and the two Dropouts.
TEST(TransformerLM, CapturedIntermediatesAreTheSubmodulesOwn) {
  TransformerLM lm = tiny();
  Tensor t = tokens_of({1, 5, 7, 2, 3, 3, 0, 31}, 2);
  Tree vars = lm.init(random::key(0), t);
  auto [logits, state] = lm.apply_mutable(vars, {}, {.capture_intermediates = true}, t);
  EXPECT_ALLCLOSE(logits, lm.apply(vars, t), 1e-6, 1e-6);
  const Tree& block = state.at("intermediates/h_0");
  EXPECT_TRUE(block.has_path("Dropout_0") && block.has_path("Dropout_1"));
  // h = x + attn (the first Dropout's output is attn's own), block output = h + c_proj
  Tensor attn = block.at("attn/__call__/0").tensor(), c_proj = block.at("c_proj/__call__/0").tensor();
  Tensor out = block.at("__call__/0").tensor();
  EXPECT_ALLCLOSE(block.at("Dropout_0/__call__/0").tensor(), attn, 0, 0);
  Tensor x = state.at("intermediates/wte/__call__/0").tensor() +
             state.at("intermediates/wpe/__call__/0").tensor();
  EXPECT_ALLCLOSE(out, x + attn + c_proj, 1e-5, 1e-6);
}

TEST(TransformerLM, ScanAndRematVariantsAgree) {
  Tensor t = tokens_of({1, 5, 7, 2, 3, 3, 0, 31}, 2);
  TransformerLM plain = tiny();
  Tree vars = plain.init(random::key(0), t);
  TransformerLM remat = tiny();
  remat.remat = true;
  EXPECT_TRUE(testing::allclose(remat.apply(vars, t), plain.apply(vars, t), 1e-6, 1e-6));

  TransformerLM scan = tiny();
  scan.scan_layers = true;
  Tree sv = scan.init(random::key(0), t);
  EXPECT_EQ(sv.at("params/h/ln_1/scale").tensor().shape(), (Shape{2, 16}));
  EXPECT_EQ(sv.at("params/h/attn/query/kernel").tensor().shape(), (Shape{2, 16, 2, 8}));
  TransformerLM scan_remat = scan;
  scan_remat.remat = true;
  Tree srv = scan_remat.init(random::key(0), t);
  EXPECT_TRUE(srv.same_structure(sv));
  auto loss = [&](const TransformerLM& m) {
    return [&, m](const Tree& p) {
      return mean(softmax_cross_entropy_with_integer_labels(
          m.apply(nn::variables({{"params", p}}), t), t));
    };
  };
  auto [l1, g1] = value_and_grad(loss(scan))(sv["params"]);
  auto [l2, g2] = value_and_grad(loss(scan_remat))(sv["params"]);
  EXPECT_NEAR(l1.item<double>(), l2.item<double>(), 1e-6);
  for (const auto& [path, g] : g1.flatten())
    EXPECT_TRUE(testing::allclose(g2.at(path).tensor(), g, 1e-5, 1e-7)) << path;
}

TEST(TransformerLM, DropoutNeedsAnRngAndChangesOutputs) {
  Tensor t = tokens_of({1, 5, 7, 2}, 1);
  TransformerLM lm = tiny();
  Tree vars = lm.init(random::key(0), t);
  lm.dropout_rate = 0.5;
  lm.deterministic = false;
  EXPECT_ANY_THROW(lm.apply(vars, t));
  Tensor a = lm.apply(vars, {.rngs = {{"dropout", random::key(1)}}}, t);
  Tensor b = lm.apply(vars, {.rngs = {{"dropout", random::key(2)}}}, t);
  EXPECT_FALSE(testing::allclose(a, b, 1e-3, 1e-3));
  EXPECT_TRUE(testing::allclose(a, lm.apply(vars, {.rngs = {{"dropout", random::key(1)}}}, t),
                                0, 0));
}

TEST(TransformerLM, Errors) {
  TransformerLM lm = tiny();
  try {
    lm.init(random::key(0), from_vector(std::vector<int32_t>(9, 1), {1, 9}));
    FAIL() << "expected ShapeError";
  } catch (const ShapeError& e) {
    EXPECT_NE(std::string(e.what()).find("TransformerLM"), std::string::npos);
    EXPECT_NE(std::string(e.what()).find("[1, 9]"), std::string::npos) << e.what();
  }
  EXPECT_THROW(lm.init(random::key(0), from_vector(std::vector<int32_t>(4, 1), {4})), ShapeError);
  TransformerLM bad = tiny();
  bad.num_heads = 3;
  EXPECT_THROW(bad.init(random::key(0), tokens_of({1, 2}, 1)), ValueError);
}

TEST(TransformerLM, SgdStepsLowerTheLoss) {
  for (bool scan : {false, true}) {
    TransformerLM lm = tiny();
    lm.scan_layers = scan;
    lm.remat = scan;
    Tensor inputs = tokens_of({1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}, 2);
    Tensor labels = tokens_of({2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13}, 2);
    Tree params = lm.init(random::key(0), inputs)["params"];
    std::vector<double> losses;
    for (int step = 0; step < 5; ++step) {
      auto [loss, grads] = value_and_grad([&](const Tree& p) {
        return mean(softmax_cross_entropy_with_integer_labels(
            lm.apply(nn::variables({{"params", p}}), inputs), labels));
      })(params);
      losses.push_back(loss.item<double>());
      params = tree_map([](const Tensor& p, const Tensor& g) { return p - g * 0.5; }, params,
                        grads);
    }
    EXPECT_LT(losses.back(), losses.front() - 0.1) << "scan " << scan;
  }
}

}  // namespace
}  // namespace loom

namespace loom {
namespace {

TEST(TransformerLM, Bf16ComputeIsCloseToF32) {
  TransformerLM f32 = tiny();
  TransformerLM bf16 = f32;
  bf16.dtype = DType::BF16;
  Tensor t = tokens_of({1, 5, 7, 2, 3, 3, 0, 31}, 2);
  Tree vars = f32.init(random::key(0), t);
  Tensor y = bf16.apply(vars, t);
  EXPECT_EQ(y.dtype(), DType::BF16);
  EXPECT_ALLCLOSE(y.to(DType::F32), f32.apply(vars, t), 5e-2, 5e-2);
}

}  // namespace
}  // namespace loom
