// The seed's "Top-level training code patterns": the CNN, create_train_state (init on a dummy
// batch, params from the variables) and loss_fn (apply with {"params": params}, one-hot labels,
// softmax cross entropy), differentiated with value_and_grad, against Flax/Optax's loss and
// gradients. The optimizer (optax.sgd + TrainState) lives in optim/ and train/; here a plain
// SGD step shows the gradients train.
// docs/linen_to_loom.md quotes the code between the "// [doc]" markers.
#include <gtest/gtest.h>

#include "core/grad.h"
#include "core/ops/elementwise.h"
#include "core/ops/loss.h"
#include "core/ops/reduce.h"
#include "core/ops/shape.h"
#include "modules/layers/activation.h"
#include "modules/layers/conv.h"
#include "modules/layers/linear.h"
#include "modules/tabulate.h"
#include "tests/modules/flax_golden.h"

namespace loom {
namespace {

// [doc:cnn]
struct CNN : nn::Module<CNN> {
  Tensor call(const Tensor& input) const {
    Tensor x = nn::Conv{.features = 32, .kernel_size = {3, 3}}(input);
    x = nn::relu(x);
    x = nn::avg_pool(x, {2, 2}, {2, 2});
    x = nn::Conv{.features = 64, .kernel_size = {3, 3}}(x);
    x = nn::relu(x);
    x = nn::avg_pool(x, {2, 2}, {2, 2});
    x = x.reshape({x.dim(0), -1});
    x = nn::Dense{.features = 256}(x);
    x = nn::relu(x);
    x = nn::Dense{.features = 10}(x);
    return x;
  }
};
// [end]

// [doc:create-train-state]
Tree create_train_state(random::Key rng) {
  Tree variables = CNN{}.init(rng, ones({1, 28, 28, 1}));
  Tree params = variables["params"];
  return params;  // with optim/: TrainState::create(params, optim::sgd(lr, momentum))
}
// [end]

TEST(SeedTrainState, CreateTrainStateAndLossFnMatchFlax) {
  const auto& c = testing::flax_case("cnn");
  Tensor image = testing::golden_tensor(c.at("input"));
  Tensor label = testing::golden_tensor(c.at("labels"));
  Tree params = create_train_state(random::key(0));
  EXPECT_TRUE(testing::tree_matches_golden(nn::variables({{"params", params}}), c.at("variables"),
                                           1e-6, 1e-7, &c.at("variable_paths")));

  // [doc:loss-fn]
  auto loss_fn = [&](const Tree& params) {
    Tensor logits = CNN{}.apply(nn::variables({{"params", params}}), image);
    Tensor one_hot = nn::one_hot(label, 10);
    Tensor loss = mean(softmax_cross_entropy(logits, one_hot));
    return std::pair{loss, logits};
  };
  auto [loss, logits, grads] = value_and_grad_aux(loss_fn)(params);
  // [end]
  EXPECT_TRUE(testing::matches_golden(logits, c.at("output"), 1e-4, 1e-5));
  EXPECT_NEAR(loss.item<float>(), c.at("loss").get<double>(), 1e-5);
  EXPECT_TRUE(testing::tree_matches_golden(nn::variables({{"params", grads}}), c.at("grads"), 1e-3,
                                           1e-6));

  // One SGD step lowers the loss on this batch.
  Tree stepped = tree_map([](const Tensor& p, const Tensor& g) { return p - g * 0.05; }, params,
                          grads);
  EXPECT_LT(loss_fn(stepped).first.item<float>(), loss.item<float>());
}

TEST(SeedTrainState, TabulateTheCNN) {
  std::string table = nn::tabulate(CNN{}, random::key(0), ones({1, 28, 28, 1}));
  // One row per call, with shapes; params per module; totals as Flax counts them.
  for (const char* part :
       {"CNN Summary", "| CNN ", "float32[1,28,28,1]", "float32[1,10]", "Conv_0 ", "Conv_1 ",
        "Dense_0 ", "Dense_1 ", "kernel: float32[3,3,1,32]", "bias: float32[32]", "320 (1.25 KiB)",
        "kernel: float32[3136,256]", "float32[1,3136]", "Total params: 824,458 (3.15 MiB)"})
    EXPECT_NE(table.find(part), std::string::npos) << "missing '" << part << "' in:\n" << table;
}

}  // namespace
}  // namespace loom
