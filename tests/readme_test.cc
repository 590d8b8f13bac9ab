// The README's API example, compiled and run.
#include <gtest/gtest.h>

#include "core/loom.h"
#include "modules/layers/activation.h"
#include "modules/layers/linear.h"
#include "optim/optim.h"
#include "train/train_state.h"

namespace {
using namespace loom;

struct MLP : nn::Module<MLP> {                 // a module is a config; variables live outside
  int64_t hidden = 64;
  Tensor call(const Tensor& x) const {
    Tensor h = nn::relu(nn::Dense{.features = hidden}(x));      // Dense_0
    return nn::Dense{.features = 10}.named("head")(h);          // head
  }
};

TEST(Readme, ApiExampleTrains) {
  Tensor x = random::normal(random::key(1), {8, 5});
  Tensor labels = from_vector<int32_t>({0, 1, 2, 3, 4, 5, 6, 7}, {8});
  Tree vars = MLP{}.init(random::key(0), x);     // {"params": {"Dense_0": ..., "head": ...}}
  auto state = train::TrainState::create(vars["params"], optim::adamw(1e-3));
  auto loss_fn = [&](const Tree& p) {
    return mean(softmax_cross_entropy_with_integer_labels(
        MLP{}.apply(nn::variables({{"params", p}}), x), labels));
  };
  auto [loss, grads] = value_and_grad(loss_fn)(state.params);
  state = state.apply_gradients(grads);
  EXPECT_EQ(vars["params"].keys(), (std::vector<std::string>{"Dense_0", "head"}));
  EXPECT_LT(loss_fn(state.params).item<float>(), loss.item<float>());
  EXPECT_EQ(state.step_value(), 1);
}

}  // namespace
