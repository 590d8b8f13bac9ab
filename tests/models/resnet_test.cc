// ResNet v1.5: Flax's structure and parameter counts for every preset, the batch statistics
// updating through apply_mutable, errors, and a few SGD steps lowering the loss.
#include <gtest/gtest.h>

#include "core/grad.h"
#include "core/ops/elementwise.h"
#include "core/ops/loss.h"
#include "core/ops/reduce.h"
#include "modules/models/resnet.h"
#include "tests/support/testing.h"

namespace loom {
namespace {

using namespace nn::models;

/// Param count from an init on a small input (counts do not depend on the spatial size).
int64_t param_count(const ResNet& model) {
  return model.init(random::key(0), zeros({1, 72, 72, 3}))["params"].total_size();
}

TEST(ResNet, ParameterCountsEqualFlax) {
  // ResNet-50's structure at 1/8 width (Flax's count from jax.eval_shape, in the golden).
  auto g = testing::load_golden("flax_models.json");
  EXPECT_EQ(param_count(resnet50(100, {.num_filters = 8})),
            g.at("resnet50_f8_c100_param_count").get<int64_t>());
}

// Full size (Flax's ImageNet example, 1000 classes): several seconds of init on the CPU.
TEST(ResNet, DISABLED_FullSizeCountsEqualFlax) {
  EXPECT_EQ(param_count(resnet18(1000)), 11689512);
  EXPECT_EQ(param_count(resnet34(1000)), 21797672);
  EXPECT_EQ(param_count(resnet50(1000)), 25557032);
  EXPECT_EQ(param_count(resnet101(1000)), 44549160);
  EXPECT_EQ(param_count(resnet152(1000)), 60192808);
  EXPECT_EQ(param_count(resnet200(1000)), 64673832);
}

TEST(ResNet, FlaxNamesAndShapes) {
  ResNet m = resnet50(10, {.num_filters = 4});
  Tree vars = m.init(random::key(0), zeros({1, 32, 32, 3}));
  EXPECT_EQ(vars.keys(), (std::vector<std::string>{"params", "batch_stats"}));
  const Tree& p = vars["params"];
  EXPECT_EQ(p.at("conv_init/kernel").tensor().shape(), (Shape{7, 7, 3, 4}));
  EXPECT_FALSE(p.has_path("conv_init/bias"));
  EXPECT_EQ(p.at("bn_init/scale").tensor().shape(), (Shape{4}));
  EXPECT_EQ(p.at("BottleneckResNetBlock_0/conv_proj/kernel").tensor().shape(),
            (Shape{1, 1, 4, 16}));
  EXPECT_TRUE(p.has_path("BottleneckResNetBlock_0/norm_proj/bias"));
  EXPECT_FALSE(p.has_path("BottleneckResNetBlock_1/conv_proj"));
  EXPECT_TRUE(p.has_path("BottleneckResNetBlock_15/Conv_2/kernel"));
  EXPECT_FALSE(p.has_path("BottleneckResNetBlock_16"));
  EXPECT_EQ(p.at("Dense_0/kernel").tensor().shape(), (Shape{128, 10}));
  // The last norm of each block starts at zero scale; the others at one.
  EXPECT_EQ(sum(p.at("BottleneckResNetBlock_3/BatchNorm_2/scale").tensor()).item<float>(), 0.f);
  EXPECT_EQ(sum(p.at("BottleneckResNetBlock_3/BatchNorm_1/scale").tensor()).item<float>(), 8.f);
  EXPECT_EQ(vars.at("batch_stats/bn_init/var").tensor().shape(), (Shape{4}));

  ResNet small = resnet18(10, {.num_filters = 4, .small_input_stem = true});
  Tree sv = small.init(random::key(0), zeros({1, 28, 28, 1}));
  EXPECT_EQ(sv.at("params/conv_init/kernel").tensor().shape(), (Shape{3, 3, 1, 4}));
  EXPECT_TRUE(sv.has_path("params/ResNetBlock_7/Conv_1/kernel"));
  // 28x28 stays 28x28 through the stem (no stride, no pool), then halves per stage.
  small.train = false;
  EXPECT_EQ(small.apply(sv, zeros({2, 28, 28, 1})).shape(), (Shape{2, 10}));
}

TEST(ResNet, BatchStatsUpdateThroughApplyMutable) {
  ResNet m = resnet18(5, {.num_filters = 4, .small_input_stem = true});
  Tensor x = testing::test_values({4, 8, 8, 3}, 1, -1, 1, DType::F32) * 3.0 + 1.0;
  Tree vars = m.init(random::key(0), x);
  auto [logits, upd] = m.apply_mutable(vars, {"batch_stats"}, x);
  EXPECT_EQ(logits.shape(), (Shape{4, 5}));
  ASSERT_TRUE(upd.contains("batch_stats"));
  // momentum 0.9: new mean = 0.9 * 0 + 0.1 * batch mean of the stem conv's output.
  Tensor before = vars.at("batch_stats/bn_init/mean").tensor();
  Tensor after = upd.at("batch_stats/bn_init/mean").tensor();
  EXPECT_FALSE(testing::allclose(before, after, 0, 1e-6));
  EXPECT_EQ(upd["batch_stats"].flatten().size(), vars["batch_stats"].flatten().size());
  // Evaluation reads the running statistics and changes nothing.
  ResNet eval = m;
  eval.train = false;
  EXPECT_EQ(eval.apply(vars, x).shape(), (Shape{4, 5}));
  // Training without "batch_stats" mutable is an error (as Flax).
  EXPECT_ANY_THROW(m.apply(vars, x));
}

TEST(ResNet, Errors) {
  ResNet m = resnet18(10);
  try {
    m.init(random::key(0), zeros({8, 8, 3}));
    FAIL() << "expected ShapeError";
  } catch (const ShapeError& e) {
    EXPECT_NE(std::string(e.what()).find("ResNet"), std::string::npos);
    EXPECT_NE(std::string(e.what()).find("[8, 8, 3]"), std::string::npos) << e.what();
  }
}

TEST(ResNet, SgdStepsLowerTheLoss) {
  for (ResNetBlockKind kind : {ResNetBlockKind::Basic, ResNetBlockKind::Bottleneck}) {
    ResNet m = resnet({1, 1}, kind, 4, {.num_filters = 4, .small_input_stem = true});
    Tensor x = testing::test_values({8, 8, 8, 3}, 7, -1, 1, DType::F32);
    Tensor labels = from_vector(std::vector<int32_t>{0, 1, 2, 3, 0, 1, 2, 3}, {8});
    Tree vars = m.init(random::key(0), x);
    Tree params = vars["params"], stats = vars["batch_stats"];
    std::vector<double> losses;
    for (int step = 0; step < 5; ++step) {
      Tree new_stats;
      auto [loss, grads] = value_and_grad([&](const Tree& p) {
        auto [logits, upd] = m.apply_mutable(
            nn::variables({{"params", p}, {"batch_stats", stats}}), {"batch_stats"}, x);
        new_stats = upd["batch_stats"];
        return mean(softmax_cross_entropy_with_integer_labels(logits, labels));
      })(params);
      losses.push_back(loss.item<double>());
      params = tree_map([](const Tensor& p, const Tensor& g) { return p - g * 0.1; }, params,
                        grads);
      stats = tree_map([](const Tensor& t) { return t.detach(); }, new_stats);
    }
    EXPECT_LT(losses.back(), losses.front() - 0.05) << "block kind " << int(kind);
  }
}

}  // namespace
}  // namespace loom

namespace loom {
namespace {

TEST(ResNet, Bf16ComputeIsCloseToF32) {
  using namespace nn::models;
  Tensor x = testing::test_values({2, 16, 16, 3}, 5, -1, 1, DType::F32);
  ResNet f32 = resnet({1, 1}, ResNetBlockKind::Basic, 10, {.num_filters = 8, .train = false});
  ResNet bf16 = f32;
  bf16.dtype = DType::BF16;
  Tree vars = f32.init(random::key(0), x);
  Tensor y = bf16.apply(vars, x);
  EXPECT_EQ(y.dtype(), DType::BF16);
  EXPECT_EQ(vars.at("params/conv_init/kernel").tensor().dtype(), DType::F32);  // param_dtype
  EXPECT_ALLCLOSE(y.to(DType::F32), f32.apply(vars, x), 5e-2, 5e-2);
}

}  // namespace
}  // namespace loom
