// The README's taste of the API, built against the installed package: a two-layer MLP trained
// for a few AdamW steps on a fixed batch must lower its loss.
#include <iostream>

#include "core/loom.h"
#include "modules/layers/activation.h"
#include "modules/layers/linear.h"
#include "optim/optim.h"
#include "train/train_state.h"

using namespace loom;

struct MLP : nn::Module<MLP> {
  Tensor call(const Tensor& x) const {
    return nn::Dense{.features = 4}.named("head")(nn::relu(nn::Dense{.features = 16}(x)));
  }
};

int main() {
  const Tensor x = random::normal(random::key(1), {32, 8});
  const Tensor labels = from_vector(std::vector<int32_t>(32, 2), {32});
  auto state = train::TrainState::create(MLP{}.init(random::key(0), x)["params"], optim::adamw(1e-2));
  auto loss_of = [&](const Tree& p) {
    return mean(softmax_cross_entropy_with_integer_labels(
        MLP{}.apply(nn::variables({{"params", p}}), x), labels));
  };
  const float first = loss_of(state.params).item<float>();
  for (int i = 0; i < 20; ++i) state = state.apply_gradients(grad(loss_of)(state.params));
  const float last = loss_of(state.params).item<float>();
  std::cout << "loss " << first << " -> " << last << "\n";
  return last < 0.5f * first ? 0 : 1;
}
