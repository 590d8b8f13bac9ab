// capture_intermediates (modules/module.h): what apply_mutable records, against Flax's tree for
// the same model and params (tests/golden/flax_capture.json, scripts/golden/gen_flax_capture.py).
#include <gtest/gtest.h>

#include <algorithm>

#include "core/ops/elementwise.h"
#include "modules/layers/linear.h"
#include "modules/module.h"
#include "modules/transforms/scan.h"
#include "tests/support/testing.h"

namespace loom::nn {
namespace {

// The golden script's model: one Dense called twice (a tuple of two outputs), then another.
struct TwiceMlp : Module<TwiceMlp> {
  Tensor call(const Tensor& x) const {
    Dense d{.features = 4};
    Tensor h = relu(d(x));
    h = d(h);
    return Dense{.features = 2}(h);
  }
};

// A module returning a pair, and one returning something capture does not record.
struct PairOut : Module<PairOut> {
  std::pair<Tensor, Tensor> call(const Tensor& x) const { return {x * 2.0, x + 1.0}; }
};
struct CountOut : Module<CountOut> {
  int64_t call(const Tensor& x) const { return x.numel(); }
};
struct Mixed : Module<Mixed> {
  Tensor call(const Tensor& x) const {
    auto [a, b] = PairOut{}(x);
    CountOut{}(x);
    return a + b;
  }
};

struct Block : Module<Block> {
  Tensor call(const Tensor& c) const { return relu(Dense{.features = 4}(c)); }
};
struct ScanMlp : Module<ScanMlp> {
  Tensor call(const Tensor& x) const {
    return Scan<Block>{.length = 3, .variable_axes = {"params", "intermediates"}}(x);
  }
};

Tree golden_variables(const nlohmann::json& c) {
  Tree vars;
  for (const auto& [path, value] : c["params"].items()) vars.set("params/" + path, testing::golden_tensor(value));
  return vars;
}

std::vector<std::string> paths(const Tree& t) {
  std::vector<std::string> out;
  for (const auto& [path, leaf] : t.flatten()) out.push_back(path);
  std::sort(out.begin(), out.end());
  return out;
}

TEST(CaptureIntermediates, EveryCallEqualsFlax) {
  const nlohmann::json& c = testing::golden_case("flax_capture.json", "all");
  Tensor x = testing::golden_tensor(c["x"]);
  auto [y, state] = TwiceMlp{}.apply_mutable(golden_variables(c), {}, {.capture_intermediates = true}, x);
  std::vector<std::string> expected;
  for (const auto& [path, value] : c["intermediates"].items()) {
    expected.push_back(path);
    ASSERT_TRUE(state.has_path(path)) << path;
    EXPECT_ALLCLOSE(state.at(path).tensor(), testing::golden_tensor(value), 1e-6, 1e-6) << path;
  }
  std::sort(expected.begin(), expected.end());
  EXPECT_EQ(paths(state), expected);  // intermediates/Dense_0/__call__/{0,1}, Dense_1, __call__
  EXPECT_ALLCLOSE(state.at("intermediates/__call__/0").tensor(), y, 0, 0);
}

TEST(CaptureIntermediates, FilterPicksModulesByTypeAndPath) {
  const nlohmann::json& c = testing::golden_case("flax_capture.json", "last_dense");
  Tensor x = testing::golden_tensor(c["x"]);
  auto [y, state] = TwiceMlp{}.apply_mutable(
      golden_variables(c), {},
      {.capture_intermediates = [](const std::string& type, const std::string& path) {
         return type == "Dense" && path == "/Dense_1";
       }},
      x);
  std::vector<std::string> expected;
  for (const auto& [path, value] : c["intermediates"].items()) {
    expected.push_back(path);
    EXPECT_ALLCLOSE(state.at(path).tensor(), testing::golden_tensor(value), 1e-6, 1e-6) << path;
  }
  EXPECT_EQ(paths(state), expected);
}

TEST(CaptureIntermediates, PairsAreDictsAndOtherOutputsAreSkipped) {
  Tensor x = from_vector(std::vector<float>{1, 2, 3}, {3});
  auto [y, state] = Mixed{}.apply_mutable(Tree(), {}, {.capture_intermediates = true}, x);
  EXPECT_EQ(paths(state),
            (std::vector<std::string>{"intermediates/PairOut_0/__call__/0/0",
                                      "intermediates/PairOut_0/__call__/0/1",
                                      "intermediates/__call__/0"}));
  EXPECT_EQ(state.at("intermediates/PairOut_0/__call__/0/1").tensor().to_vector<float>(),
            (std::vector<float>{2, 3, 4}));
}

TEST(CaptureIntermediates, OffByDefaultAndKeepsOtherMutableCollections) {
  const nlohmann::json& c = testing::golden_case("flax_capture.json", "all");
  Tensor x = testing::golden_tensor(c["x"]);
  auto [y, state] = TwiceMlp{}.apply_mutable(golden_variables(c), {"batch_stats"}, x);
  EXPECT_TRUE(state.empty());
  auto [y2, all] = TwiceMlp{}.apply_mutable(golden_variables(c), Mutable::all(),
                                            {.capture_intermediates = true}, x);
  EXPECT_TRUE(all.contains("params"));  // "all" stays all, with the intermediates in it
  EXPECT_TRUE(all.has_path("intermediates/Dense_1/__call__/0"));
}

// Inside nn::Scan each step's outputs are recorded and stacked, the scanned block's own included
// (Flax's body returns (carry, y), so its entry is __call__/0/0 where loom's, whose body returns
// the carry, is __call__/0).
TEST(CaptureIntermediates, ScanStacksEveryStepsOutputs) {
  const nlohmann::json& c = testing::golden_case("flax_capture.json", "scan");
  Tensor x = testing::golden_tensor(c["x"]);
  auto [y, state] = ScanMlp{}.apply_mutable(golden_variables(c), {}, {.capture_intermediates = true}, x);
  EXPECT_ALLCLOSE(y, testing::golden_tensor(c["y"]), 1e-6, 1e-6);
  std::vector<std::string> expected;
  for (const auto& [flax_path, value] : c["intermediates"].items()) {
    std::string path = flax_path;
    if (path == "intermediates/ScanBlock_0/__call__/0/0") path = "intermediates/ScanBlock_0/__call__/0";
    expected.push_back(path);
    ASSERT_TRUE(state.has_path(path)) << path;
    EXPECT_ALLCLOSE(state.at(path).tensor(), testing::golden_tensor(value), 1e-6, 1e-6) << path;
  }
  std::sort(expected.begin(), expected.end());
  EXPECT_EQ(paths(state), expected);
  EXPECT_EQ(state.at("intermediates/ScanBlock_0/Dense_0/__call__/0").tensor().shape(), (Shape{3, 3, 4}));
}

TEST(CaptureIntermediates, MakesIntermediatesMutableWhateverTheFilter) {
  EXPECT_TRUE(Mutable::none().with("intermediates").allows("intermediates"));
  EXPECT_FALSE(Mutable::none().with("intermediates").allows("batch_stats"));
  EXPECT_EQ(Mutable({"batch_stats"}).with("intermediates").str(), "[batch_stats, intermediates]");
  EXPECT_EQ(Mutable({"intermediates"}).with("intermediates").str(), "[intermediates]");
  EXPECT_EQ(Mutable::init_default().with("intermediates").str(), "all");
  EXPECT_EQ(Mutable::all().with("intermediates").str(), "all");
}

TEST(CaptureIntermediates, ApplyThatCannotReturnThemSaysSo) {
  const nlohmann::json& c = testing::golden_case("flax_capture.json", "all");
  Tensor x = testing::golden_tensor(c["x"]);
  EXPECT_THROW_WITH(TwiceMlp{}.apply(golden_variables(c), {.capture_intermediates = true}, x),
                    ValueError, "TwiceMlp.apply", "capture_intermediates", "apply_mutable");
}

}  // namespace
}  // namespace loom::nn
