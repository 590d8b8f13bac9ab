// The zoo's models on CUDA against the CPU: the same variables give the same logits, updated
// batch statistics, loss and gradients (f32: logits rtol 1e-4 and grads 1e-3, since cuDNN and
// cuBLAS sum in another order; bf16 compute 1e-2 on the logits), init on the GPU equals the CPU's.
#include <gtest/gtest.h>

#include "core/fusions.h"
#include "core/grad.h"
#include "core/ops/elementwise.h"
#include "core/ops/loss.h"
#include "core/ops/reduce.h"
#include "modules/models/resnet.h"
#include "modules/models/transformer.h"
#include "modules/models/wmt_transformer.h"
#include "tests/support/testing.h"

namespace loom {
namespace {

using namespace nn::models;

Tree to_device(const Tree& t, Device d) {
  return tree_map([d](const Tensor& x) { return x.to(d); }, t);
}

::testing::AssertionResult trees_close(const Tree& gpu, const Tree& cpu, double rtol, double atol) {
  for (const auto& [path, leaf] : cpu.flatten()) {
    auto r = testing::allclose(gpu.at(path).tensor().to(Device::cpu()), leaf, rtol, atol);
    if (!r) return ::testing::AssertionFailure() << path << ": " << r.message();
  }
  return ::testing::AssertionSuccess();
}

TEST(ModelsGpu, ResNetForwardBackwardAndBatchStats) {
  LOOM_REQUIRE_GPU();
  Device gpu = Device::cuda(0);
  for (ResNetBlockKind kind : {ResNetBlockKind::Basic, ResNetBlockKind::Bottleneck}) {
    SCOPED_TRACE(int(kind));
    ResNet m = resnet({1, 1}, kind, 10, {.num_filters = 8});
    Tensor x = testing::test_values({2, 32, 32, 3}, 5, -1, 1, DType::F32);
    Tensor labels = from_vector(std::vector<int32_t>{3, 7}, {2});
    Tree vars = m.init(random::key(0), x);
    Tree gvars_init = m.init(random::key(0), x.to(gpu));
    EXPECT_TRUE(trees_close(gvars_init, vars, 1e-6, 1e-7));
    auto loss_fn = [&](const Tree& stats, const Tensor& in, const Tensor& lab) {
      return [&, stats, in, lab](const Tree& p) {
        auto [logits, upd] = m.apply_mutable(nn::variables({{"params", p}, {"batch_stats", stats}}),
                                             {"batch_stats"}, in);
        return std::pair{mean(softmax_cross_entropy_with_integer_labels(logits, lab)),
                         std::pair{logits.detach(), upd}};
      };
    };
    auto [l, aux, g] = value_and_grad_aux(loss_fn(vars["batch_stats"], x, labels))(vars["params"]);
    Tree gv = to_device(vars, gpu);
    auto [gl, gaux, gg] = value_and_grad_aux(
        loss_fn(gv["batch_stats"], x.to(gpu), labels.to(gpu)))(gv["params"]);
    EXPECT_ALLCLOSE(gaux.first.to(Device::cpu()), aux.first, 1e-4, 1e-5);
    EXPECT_TRUE(trees_close(gaux.second, aux.second, 1e-4, 1e-6));
    EXPECT_NEAR(gl.item<float>(), l.item<float>(), 1e-4 * std::abs(l.item<float>()));
    EXPECT_TRUE(trees_close(gg, g, 1e-3, 1e-5));
    ResNet eval = m;
    eval.train = false;
    EXPECT_ALLCLOSE(eval.apply(gv, x.to(gpu)).to(Device::cpu()), eval.apply(vars, x), 1e-4, 1e-5);
  }
}

TEST(ModelsGpu, TransformerLMVariantsForwardBackward) {
  LOOM_REQUIRE_GPU();
  Device gpu = Device::cuda(0);
  Tensor tokens = from_vector(std::vector<int32_t>{1, 5, 7, 2, 9, 3, 3, 0, 31, 8, 4, 6, 2, 2, 1, 0},
                              {2, 8});
  for (int variant = 0; variant < 3; ++variant) {
    SCOPED_TRACE(variant);
    TransformerLM lm{.vocab_size = 32, .max_len = 8, .num_layers = 2, .num_heads = 2,
                     .d_model = 16, .scan_layers = variant > 0, .remat = variant == 2};
    Tree vars = lm.init(random::key(0), tokens);
    EXPECT_TRUE(trees_close(lm.init(random::key(0), tokens.to(gpu)), vars, 1e-6, 1e-7));
    auto loss_fn = [&](const Tensor& t) {
      return [&, t](const Tree& p) {
        return mean(softmax_cross_entropy_with_integer_labels(
            lm.apply(nn::variables({{"params", p}}), t), t));
      };
    };
    auto [l, g] = value_and_grad(loss_fn(tokens))(vars["params"]);
    auto [gl, gg] = value_and_grad(loss_fn(tokens.to(gpu)))(to_device(vars["params"], gpu));
    EXPECT_NEAR(gl.item<float>(), l.item<float>(), 1e-4 * std::abs(l.item<float>()));
    EXPECT_TRUE(trees_close(gg, g, 1e-3, 1e-5));
    // Dropout masks are the same on both devices.
    TransformerLM drop = lm;
    drop.dropout_rate = 0.1;
    drop.deterministic = false;
    Tensor c = drop.apply(vars, {.rngs = {{"dropout", random::key(3)}}}, tokens);
    Tensor d = drop.apply(to_device(vars, gpu), {.rngs = {{"dropout", random::key(3)}}},
                          tokens.to(gpu));
    EXPECT_ALLCLOSE(d.to(Device::cpu()), c, 1e-4, 1e-5);
  }
}

TEST(ModelsGpu, WmtTransformerForwardBackward) {
  LOOM_REQUIRE_GPU();
  Device gpu = Device::cuda(0);
  Tensor inputs = from_vector(std::vector<int32_t>{5, 9, 2, 30, 0, 0, 7, 1, 1, 4, 12, 3}, {2, 6});
  Tensor targets = from_vector(std::vector<int32_t>{3, 8, 21, 0, 0, 6, 6, 2, 17, 9}, {2, 5});
  for (bool shared : {false, true}) {
    SCOPED_TRACE(shared);
    wmt::Transformer model{.config = {.vocab_size = 32, .share_embeddings = shared,
                                      .logits_via_embedding = shared, .emb_dim = 8,
                                      .num_heads = 2, .num_layers = 2, .qkv_dim = 8,
                                      .mlp_dim = 16, .max_len = 16, .deterministic = true}};
    Tree vars = model.init(random::key(0), inputs, targets);
    auto loss_fn = [&](const Tensor& in, const Tensor& tg) {
      return [&, in, tg](const Tree& p) {
        return mean(softmax_cross_entropy_with_integer_labels(
            model.apply(nn::variables({{"params", p}}), in, tg), tg));
      };
    };
    auto [l, g] = value_and_grad(loss_fn(inputs, targets))(vars["params"]);
    auto [gl, gg] = value_and_grad(loss_fn(inputs.to(gpu), targets.to(gpu)))(
        to_device(vars["params"], gpu));
    EXPECT_NEAR(gl.item<float>(), l.item<float>(), 1e-4 * std::abs(l.item<float>()));
    EXPECT_TRUE(trees_close(gg, g, 1e-3, 1e-5));
  }
}

TEST(ModelsGpu, Bf16Compute) {
  LOOM_REQUIRE_GPU();
  Device gpu = Device::cuda(0);
  Tensor tokens = from_vector(std::vector<int32_t>{1, 5, 7, 2, 9, 3, 3, 0}, {1, 8});
  TransformerLM lm{.vocab_size = 32, .max_len = 8, .num_layers = 2, .num_heads = 2,
                   .d_model = 16, .dtype = DType::BF16};
  Tree vars = lm.init(random::key(0), tokens);
  Tensor cpu = lm.apply(vars, tokens).to(DType::F32);
  Tensor dev = lm.apply(to_device(vars, gpu), tokens.to(gpu)).to(Device::cpu()).to(DType::F32);
  // Each device rounds to bfloat16 after its own ops (the GPU's fused epilogues round once where
  // the CPU's separate ops round twice): on an H200 (2026-11-29) the logits differed by up to
  // 0.035 (0.02 with every fusion off), a few bfloat16 steps of logits near 0.5, over two layers.
  EXPECT_ALLCLOSE(dev, cpu, 5e-2, 5e-2);
  ResNet r = resnet({1, 1}, ResNetBlockKind::Basic, 10, {.num_filters = 8, .dtype = DType::BF16,
                                                        .train = false});
  Tensor x = testing::test_values({2, 16, 16, 3}, 5, -1, 1, DType::F32);
  Tree rv = r.init(random::key(0), x);
  EXPECT_EQ(r.apply(rv, x).dtype(), DType::BF16);
  EXPECT_ALLCLOSE(r.apply(to_device(rv, gpu), x.to(gpu)).to(Device::cpu()).to(DType::F32),
                  r.apply(rv, x).to(DType::F32), 1e-2, 1e-2);
}

TEST(ModelsGpu, EachFusionOffGivesTheSameStep) {
  // Every fused route (core/fusions.h) switched off in turn, and all of them: a bottleneck ResNet
  // (1x1 convolutions, BatchNorm + ReLU, running statistics) and a transformer LM (GELU and
  // residual epilogues, q/k/v input gradients, LayerNorm rows, cross-entropy) give the CPU's
  // loss, gradients and batch statistics at the tolerances of the tests above.
  LOOM_REQUIRE_GPU();
  Device gpu = Device::cuda(0);
  ResNet r = resnet({1, 1}, ResNetBlockKind::Bottleneck, 10, {.num_filters = 8});
  Tensor x = testing::test_values({2, 16, 16, 3}, 5, -1, 1, DType::F32);
  Tensor labels = from_vector(std::vector<int32_t>{3, 7}, {2});
  Tree rv = r.init(random::key(0), x);
  auto resnet_loss = [&](const Tree& stats, const Tensor& in, const Tensor& lab) {
    return [&, stats, in, lab](const Tree& p) {
      auto [logits, upd] = r.apply_mutable(nn::variables({{"params", p}, {"batch_stats", stats}}),
                                           {"batch_stats"}, in);
      return std::pair{mean(softmax_cross_entropy_with_integer_labels(logits, lab)), upd};
    };
  };
  TransformerLM lm{.vocab_size = 32, .max_len = 8, .num_layers = 2, .num_heads = 2, .d_model = 16};
  Tensor tokens = from_vector(std::vector<int32_t>{1, 5, 7, 2, 9, 3, 3, 0, 31, 8, 4, 6, 2, 2, 1, 0},
                              {2, 8});
  Tree lv = lm.init(random::key(0), tokens);
  auto lm_loss = [&](const Tensor& t) {
    return [&, t](const Tree& p) {
      return mean(softmax_cross_entropy_with_integer_labels(lm.apply(nn::variables({{"params", p}}), t), t));
    };
  };
  auto [rl, rstats, rg] = value_and_grad_aux(resnet_loss(rv["batch_stats"], x, labels))(rv["params"]);
  auto [ll, lg] = value_and_grad(lm_loss(tokens))(lv["params"]);
  const Tree rgv = to_device(rv, gpu), lgp = to_device(lv["params"], gpu);
  std::vector<std::vector<Fusion>> settings;
  for (Fusion f : all_fusions()) settings.push_back({f});
  settings.push_back(all_fusions());
  for (const std::vector<Fusion>& off : settings) {
    SCOPED_TRACE(off.size() == 1 ? std::string(fusion_name(off[0])) : std::string("all"));
    FusionScope scope(off, false);
    auto [grl, grstats, grg] = value_and_grad_aux(
        resnet_loss(rgv["batch_stats"], x.to(gpu), labels.to(gpu)))(rgv["params"]);
    EXPECT_NEAR(grl.item<float>(), rl.item<float>(), 1e-4 * std::abs(rl.item<float>()));
    EXPECT_TRUE(trees_close(grg, rg, 1e-3, 1e-5));
    EXPECT_TRUE(trees_close(grstats, rstats, 1e-4, 1e-6));
    auto [gll, glg] = value_and_grad(lm_loss(tokens.to(gpu)))(lgp);
    EXPECT_NEAR(gll.item<float>(), ll.item<float>(), 1e-4 * std::abs(ll.item<float>()));
    EXPECT_TRUE(trees_close(glg, lg, 1e-3, 1e-5));
  }
}

}  // namespace
}  // namespace loom
