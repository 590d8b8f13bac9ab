// The seed's "Module.partial inside other modules" (a ResNet built from partial-style configs)
// and "Non-trainable variables" (batch statistics mutable in training, immutable in
// evaluation), checked against Flax's ResNet (tests/golden/flax_modules.json).
// docs/linen_to_loom.md quotes the code between the "// [doc]" markers.
#include <gtest/gtest.h>

#include "core/ops/elementwise.h"
#include "core/ops/reduce.h"
#include "modules/layers/activation.h"
#include "modules/layers/conv.h"
#include "modules/layers/linear.h"
#include "modules/layers/normalization.h"
#include "tests/modules/flax_golden.h"

namespace loom {
namespace {

// [doc:resnet]
// functools.partial(nn.Conv, use_bias=False) as a function that builds the module.
using ConvFn = std::function<nn::Conv(int64_t features, Shape kernel, Shape strides)>;

struct ResNetBlock : nn::Module<ResNetBlock> {
  int64_t filters;
  ConvFn conv;
  nn::Partial<nn::BatchNorm> norm;
  Shape strides = {1, 1};

  Tensor call(const Tensor& x) const {
    Tensor residual = x;
    Tensor y = conv(filters, {3, 3}, strides)(x);
    y = norm()(y);
    y = nn::relu(y);
    y = conv(filters, {3, 3}, {1, 1})(y);
    nn::BatchNorm last_norm = norm();  // norm(scale_init=nn.initializers.zeros_init())
    last_norm.scale_init = nn::initializers::zeros();
    y = last_norm(y);
    if (residual.shape() != y.shape()) {
      residual = conv(filters, {1, 1}, strides).named("conv_proj")(residual);
      residual = norm.named("norm_proj")(residual);
    }
    return nn::relu(residual + y);
  }
};

struct ResNet : nn::Module<ResNet> {
  std::vector<int> stage_sizes;
  int64_t num_filters = 8;
  int64_t num_classes = 10;
  bool train = true;

  Tensor call(const Tensor& input) const {
    ConvFn conv = [](int64_t features, Shape kernel, Shape strides) {
      return nn::Conv{.features = features, .kernel_size = kernel, .strides = strides,
                      .use_bias = false};
    };
    auto norm = nn::partial(
        nn::BatchNorm{.use_running_average = !train, .momentum = 0.9, .epsilon = 1e-5});

    nn::Conv conv_init = conv(num_filters, {7, 7}, {2, 2}).named("conv_init");
    conv_init.padding = Padding::explicit_pads({{3, 3}, {3, 3}});
    Tensor x = conv_init(input);
    x = norm.named("bn_init")(x);
    x = nn::relu(x);
    x = nn::max_pool(x, {3, 3}, {2, 2}, Padding::same());
    for (size_t i = 0; i < stage_sizes.size(); ++i) {
      for (int j = 0; j < stage_sizes[i]; ++j) {
        Shape strides = i > 0 && j == 0 ? Shape{2, 2} : Shape{1, 1};
        x = ResNetBlock{.filters = num_filters << i, .conv = conv, .norm = norm,
                        .strides = strides}(x);
      }
    }
    x = mean(x, {1, 2});
    return nn::Dense{.features = num_classes}(x);
  }
};
// [end]

TEST(SeedResNet, PartialStyleConfigsGiveFlaxsParams) {
  const auto& c = testing::flax_case("resnet");
  Tensor x = testing::golden_tensor(c.at("input"));
  Tree variables = ResNet{.stage_sizes = {1, 1}}.init(random::key(0), x);
  EXPECT_TRUE(testing::tree_matches_golden(variables, c.at("variables"), 1e-6, 1e-7,
                                           &c.at("variable_paths")));
  EXPECT_EQ(variables["params"].keys(),
            (std::vector<std::string>{"conv_init", "bn_init", "ResNetBlock_0", "ResNetBlock_1",
                                      "Dense_0"}));
  EXPECT_EQ(variables.at("params/ResNetBlock_1").keys(),
            (std::vector<std::string>{"Conv_0", "BatchNorm_0", "Conv_1", "BatchNorm_1",
                                      "conv_proj", "norm_proj"}));
}

TEST(SeedResNet, BatchStatisticsMutableInTrainingImmutableInEvaluation) {
  const auto& c = testing::flax_case("resnet");
  Tensor image = testing::golden_tensor(c.at("input"));
  // [doc:initial-variables]
  Tree variables = ResNet{.stage_sizes = {1, 1}}.init(random::key(0), image);
  Tree params = variables["params"], batch_stats = variables["batch_stats"];
  // [end]

  // [doc:train-step]
  auto [logits, new_variables] = ResNet{.stage_sizes = {1, 1}, .train = true}.apply_mutable(
      nn::variables({{"params", params}, {"batch_stats", batch_stats}}), {"batch_stats"}, image);
  Tree new_batch_stats = new_variables["batch_stats"];
  // [end]
  EXPECT_TRUE(testing::matches_golden(logits, c.at("output_train"), 1e-4, 1e-5));
  EXPECT_TRUE(testing::tree_matches_golden(new_variables, c.at("updates"), 1e-5, 1e-6));
  EXPECT_EQ(new_variables.keys(), std::vector<std::string>{"batch_stats"});

  // [doc:eval-step]
  Tensor eval_logits = ResNet{.stage_sizes = {1, 1}, .train = false}.apply(
      nn::variables({{"params", params}, {"batch_stats", new_batch_stats}}), image);
  // [end]
  EXPECT_TRUE(testing::matches_golden(eval_logits, c.at("output_eval"), 1e-4, 1e-5));

  // [doc:eval-misuse]
  ResNet in_training{.stage_sizes = {1, 1}, .train = true};
  EXPECT_THROW(in_training.apply(variables, image), nn::ModifyScopeVariableError);
  // [end]
  try {
    in_training.apply(variables, image);
  } catch (const nn::ModifyScopeVariableError& e) {
    EXPECT_NE(std::string(e.what()).find("Cannot update variable \"mean\" in \"/bn_init\" because "
                                         "collection \"batch_stats\" is immutable."),
              std::string::npos)
        << e.what();
  }
}

// [doc:batchnorm-variables]
// The seed's excerpt of a BatchNorm: running statistics are variables of "batch_stats".
struct RunningMean : nn::Module<RunningMean> {
  Tensor call(const Tensor& x) const {
    nn::Variable ra_mean =
        variable("batch_stats", "mean", nn::initializers::zeros(), {x.dim(-1)});
    nn::Variable ra_var = variable("batch_stats", "var", nn::initializers::ones(), {x.dim(-1)});
    if (!is_initializing()) {
      ra_mean.set_value(ra_mean.value() * 0.9 + mean(x, {0}) * 0.1);
      ra_var.set_value(ra_var.value() * 0.9 + var(x, {0}) * 0.1);
    }
    return (x - ra_mean.value()) * rsqrt(ra_var.value() + 1e-5);
  }
};
// [end]

TEST(SeedResNet, NonTrainableVariables) {
  Tensor x = testing::flax_pattern({8, 3});
  Tree variables = RunningMean{}.init(random::key(0), x);
  EXPECT_EQ(variables.keys(), std::vector<std::string>{"batch_stats"});
  auto [y, updated] = RunningMean{}.apply_mutable(variables, {"batch_stats"}, x);
  EXPECT_ALLCLOSE(updated.at("batch_stats/mean").tensor(), mean(x, {0}) * 0.1, 1e-6, 1e-7);
  EXPECT_THROW(RunningMean{}.apply(variables, x), nn::ModifyScopeVariableError);
}

}  // namespace
}  // namespace loom
