// The seed's last section, "Loading pre-Linen checkpoints": pre-Linen numbered submodules with
// one counter for all classes, Linen with one counter per class.
#include <gtest/gtest.h>

#include "modules/checkpoint_naming.h"
#include "modules/layers/activation.h"
#include "modules/layers/conv.h"
#include "modules/layers/linear.h"
#include "tests/modules/flax_golden.h"

namespace loom {
namespace {

std::vector<std::string> keys(const Tree& t) { return t.keys(); }

TEST(SeedPreLinen, RenamesToPerClassNumbering) {
  // [doc:pre-linen]
  Tree pre_linen;  // {"Conv_0": ..., "Dense_1": ...}
  pre_linen.set("Conv_0/kernel", zeros({3, 3, 1, 4}));
  pre_linen.set("Dense_1/kernel", zeros({4, 2}));
  Tree linen = nn::rename_pre_linen(pre_linen);  // {"Conv_0": ..., "Dense_0": ...}
  // [end]
  EXPECT_EQ(keys(linen), (std::vector<std::string>{"Conv_0", "Dense_0"}));
  EXPECT_EQ(linen.at("Dense_0/kernel").tensor().shape(), (Shape{4, 2}));
}

TEST(SeedPreLinen, RecursiveOrderKeepingAndLoadable) {
  // The golden's list: Conv_0, Conv_1, BatchNorm_2, Dense_3, Dense_4, Block_5.
  auto names = testing::flax_golden().at("pre_linen").get<std::vector<std::string>>();
  Tree old;
  for (const auto& n : names) old.set(n + "/w", zeros({1}));
  old.set("Block_5/Dense_0/kernel", zeros({1}));  // nested: one class, unchanged
  old.set("Block_5/Conv_1/kernel", zeros({1}));   // nested: Conv_1 -> Conv_0
  old.set("head/kernel", zeros({1}));             // explicit names stay
  Tree linen = nn::rename_pre_linen(old);
  EXPECT_EQ(keys(linen), (std::vector<std::string>{"Conv_0", "Conv_1", "BatchNorm_0", "Dense_0",
                                                   "Dense_1", "Block_0", "head"}));
  EXPECT_EQ(keys(linen["Block_0"]), (std::vector<std::string>{"w", "Dense_0", "Conv_0"}));
  // Out of order: numbers decide, the entries keep their positions.
  Tree shuffled;
  shuffled.set("Dense_3/w", zeros({1}));
  shuffled.set("Dense_1/w", ones({1}));
  shuffled.set("Conv_2/w", zeros({1}));
  Tree r = nn::rename_pre_linen(shuffled);
  EXPECT_EQ(keys(r), (std::vector<std::string>{"Dense_1", "Dense_0", "Conv_0"}));
  EXPECT_EQ(r.at("Dense_0/w").tensor().item<float>(), 1.0f);

  // A Linen model reads the renamed params.
  struct Net : nn::Module<Net> {
    Tensor call(const Tensor& x) const {
      Tensor h = nn::relu(nn::Conv{.features = 2, .kernel_size = {3}}(x));
      return nn::Dense{.features = 1}(h);
    }
  };
  Tensor x = testing::flax_pattern({1, 4, 1});
  Tree vars = Net{}.init(random::key(0), x);
  Tree as_pre_linen;  // what the old API would have saved
  as_pre_linen.insert("Conv_0", vars.at("params/Conv_0"));
  as_pre_linen.insert("Dense_1", vars.at("params/Dense_0"));
  Tree loaded;
  loaded.insert("params", nn::rename_pre_linen(as_pre_linen));
  EXPECT_ALLCLOSE(Net{}.apply(loaded, x), Net{}.apply(vars, x), 0, 0);
}

}  // namespace
}  // namespace loom
