// The seed's dropout section: Dropout draws its mask from make_rng("dropout"); apply gets the
// key through rngs; evaluation without a key fails loudly when dropout is left on.
// docs/linen_to_loom.md quotes the code between the "// [doc]" markers.
#include <gtest/gtest.h>

#include "core/ops/elementwise.h"
#include "core/ops/reduce.h"
#include "modules/layers/linear.h"
#include "modules/layers/stochastic.h"
#include "tests/modules/flax_golden.h"

namespace loom {
namespace {

// [doc:dropout]
struct Dropout : nn::Module<Dropout> {
  double rate;

  Tensor call(const Tensor& inputs, bool deterministic = false) const {
    double keep_prob = 1.0 - rate;
    if (deterministic) return inputs;
    Tensor mask = random::bernoulli(make_rng("dropout"), keep_prob, inputs.shape());
    return where(mask, inputs / keep_prob, zeros_like(inputs));
  }
};
// [end]

struct Model : nn::Module<Model> {
  bool train = true;
  Tensor call(const Tensor& x) const {
    Tensor h = nn::Dense{.features = 4}(x);
    return Dropout{.rate = 0.5}(h, !train);
  }
};

// The same model with the library's Dropout, named as the seed's one is.
struct Library : nn::Module<Library> {
  Tensor call(const Tensor& x) const {
    Tensor h = nn::Dense{.features = 4}(x);
    return nn::Dropout{.rate = 0.5}.named("Dropout_0")(h);
  }
};

TEST(SeedDropout, MaskFromTheDropoutStream) {
  Tensor inputs = ones({3, 3});
  Tree variables = Model{}.init(random::key(0), inputs);  // at init, dropout falls back to params
  // [doc:dropout-apply]
  random::Key dropout_rng = random::key(1);
  Tensor logits = Model{}.apply(variables, {.rngs = {{"dropout", dropout_rng}}}, inputs);
  // [end]
  // The seed's Dropout is nn::Dropout: same mask as Flax's for the same key.
  Tensor expected = Library{}.apply(variables, {.rngs = {{"dropout", dropout_rng}}}, inputs);
  EXPECT_ALLCLOSE(logits, expected, 0, 0);
  // Flax's Dropout docstring: with key(1) elements 0, 1 kept and 2, 3 dropped.
  std::vector<float> row = logits.to_vector<float>();
  EXPECT_NE(row[0], 0.0f);
  EXPECT_NE(row[1], 0.0f);
  EXPECT_EQ(row[2], 0.0f);
  EXPECT_EQ(row[3], 0.0f);

  // Evaluation: deterministic, no rng needed.
  Tensor eval = Model{.train = false}.apply(variables, inputs);
  EXPECT_ALLCLOSE(eval, nn::Dense{.features = 4}.apply(
                            [&] {
                              Tree v;
                              v.insert("params", variables.at("params/Dense_0"));
                              return v;
                            }(),
                            inputs),
                  0, 0);
  // [doc:dropout-missing-rng]
  EXPECT_THROW(Model{.train = true}.apply(variables, inputs), nn::InvalidRngError);
  // [end]
}

TEST(SeedDropout, LossFnWithADropoutRng) {
  Tensor inputs = testing::flax_pattern({4, 3});
  Tree variables = Model{}.init(random::key(0), inputs);
  // [doc:dropout-loss]
  auto loss_fn = [&](const Tree& params, random::Key dropout_rng) {
    Tree vars;
    vars.insert("params", params);
    Tensor logits = Model{}.apply(vars, {.rngs = {{"dropout", dropout_rng}}}, inputs);
    return mean(square(logits));
  };
  // [end]
  Tensor a = loss_fn(variables["params"], random::key(1));
  Tensor b = loss_fn(variables["params"], random::key(1));
  Tensor c = loss_fn(variables["params"], random::key(2));
  EXPECT_EQ(a.item<float>(), b.item<float>());
  EXPECT_NE(a.item<float>(), c.item<float>());
}

}  // namespace
}  // namespace loom
