// Numerical-fault tooling wired into every op: debug-NaNs (forward through autograd::record /
// autograd::checked, backward through autograd::backward) and deterministic mode (a 100-step
// training run twice gives a bitwise-identical loss curve).
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <functional>
#include <limits>
#include <sstream>

#include "core/debug_nans.h"
#include "core/determinism.h"
#include "core/grad.h"
#include "core/ops/conv.h"
#include "core/ops/elementwise.h"
#include "core/ops/linalg.h"
#include "core/ops/nn.h"
#include "core/ops/reduce.h"
#include "core/ops/shape.h"
#include "tests/support/testing.h"
#include "train/metrics/jsonl_writer.h"
#include "train/trainer.h"

namespace loom {
namespace {

// A two-layer model whose second layer takes log of a pre-activation that is negative for the
// second example: log(-1) is the first NaN.
Tensor tiny_model(const Tensor& w) {
  Tensor x = from_vector<float>({1, 2, -1, -2}, {2, 2});
  Tensor h = matmul(x, w);         // [[3, 3], [-3, -3]] for w = ones * 1
  Tensor z = h / 3.0;              // [[1, 1], [-1, -1]]
  return sum(log(z) * 2.0);
}

TEST(Numerics, ForwardNanNamesLogWithoutGradient) {
  DebugNansScope on;
  Tensor w = ones({2, 2}, DType::F32);
  EXPECT_THROW_WITH(tiny_model(w), FloatingPointError, "debug_nans: log (forward)",
                    "2 NaN and 0 Inf", "input 0: [2, 2] float32 cpu min -1 max 1 mean 0");
}

TEST(Numerics, ForwardNanNamesLogWhileRecording) {
  DebugNansScope on;
  Tensor w = ones({2, 2}, DType::F32);
  EXPECT_THROW_WITH(value_and_grad_tensor(tiny_model)(w), FloatingPointError,
                    "debug_nans: log (forward)", "input 0: [2, 2] float32 cpu min -1 max 1");
}

TEST(Numerics, BackwardInfFromSqrtAtZeroNamesTheOp) {
  auto f = [](const Tensor& x) { return sum(sqrt(x)); };
  Tensor x = from_vector<float>({0.0f, 4.0f}, {2});
  {
    DebugNansScope on;
    EXPECT_THROW_WITH(value_and_grad_tensor(f)(x), FloatingPointError,
                      "debug_nans: sqrt (backward)", "0 NaN and 1 Inf",
                      "the gradient for its input 0", "incoming gradient: [2] float32 cpu min 1 max 1");
  }
  // Off: no check, the Inf flows out.
  auto [v, g] = value_and_grad_tensor(f)(x);
  EXPECT_EQ(v.item<float>(), 2.0f);
  EXPECT_TRUE(std::isinf(g.to_vector<float>()[0]));
}

TEST(Numerics, OpsInsideABackwardRuleReportTheRule) {
  // pow's backward computes pow(a, b - 1) = 0^-0.5 = Inf: reported by the inner op while
  // running the backward of 'pow'.
  auto f = [](const Tensor& x) { return sum(pow(x, 0.5)); };
  DebugNansScope on;
  EXPECT_THROW_WITH(value_and_grad_tensor(f)(from_vector<float>({0.0f, 1.0f}, {2})),
                    FloatingPointError, "(backward of 'pow')", "1 Inf");
}

TEST(Numerics, DisabledDoesNotCheckOrThrow) {
  ASSERT_FALSE(debug_nans_enabled());
  Tensor w = ones({2, 2}, DType::F32);
  EXPECT_TRUE(std::isnan(tiny_model(w).item<float>()));
  auto [v, g] = value_and_grad_tensor(tiny_model)(w);
  EXPECT_TRUE(std::isnan(v.item<float>()));
}

// Each op family's non-recording exit is checked: a NaN input makes the op itself the first
// offender (as jax_debug_nans reports the first primitive whose output holds one).
TEST(Numerics, EveryOpFamilyIsChecked) {
  float nan = std::numeric_limits<float>::quiet_NaN();
  Tensor bad = from_vector<float>({1, nan, 3, 4}, {2, 2});
  Tensor img = from_vector<float>({1, nan, 3, 4}, {1, 2, 2, 1});
  Tensor k = ones({1, 1, 1, 1}, DType::F32);
  Tensor labels = from_vector<int32_t>({0, 1}, {2});
  Tensor idx = from_vector<int32_t>({1, 0}, {2});
  Tensor scale = ones({2}, DType::F32);
  std::vector<std::pair<std::string, std::function<Tensor()>>> cases = {
      {"add", [&] { return bad + 1.0; }},
      {"exp", [&] { return exp(bad); }},
      {"where", [&] { return where(less(bad, scalar_like(2, bad)), 0.0, bad); }},
      {"sum", [&] { return sum(bad); }},
      {"max", [&] { return max(bad); }},
      {"dot_general", [&] { return matmul(bad, ones({2, 2}, DType::F32)); }},
      {"conv", [&] { return conv(img, k); }},
      {"softmax", [&] { return softmax(bad, -1); }},
      {"softmax_cross_entropy_with_integer_labels",
       [&] { return softmax_cross_entropy_with_integer_labels(bad, labels); }},
      {"layer_norm", [&] { return layer_norm(bad, scale, scale, 1e-5, {-1}); }},
      {"take", [&] { return take(bad, idx, 0); }},
      {"concatenate", [&] { return concatenate({bad, bad}, 0); }},
      {"pad", [&] { return pad(bad, {{1, 1}, {0, 0}}, 0.0); }},
  };
  DebugNansScope on;
  for (auto& [name, fn] : cases) {
    SCOPED_TRACE(name);
    EXPECT_THROW_WITH(fn(), FloatingPointError, "debug_nans: " + name + " (forward)");
  }
}

TEST(Numerics, DeterministicFlagSetAndRestore) {
  EXPECT_FALSE(deterministic());
  EXPECT_FALSE(set_deterministic(true));
  EXPECT_TRUE(deterministic());
  {
    DeterministicScope off(false);
    EXPECT_FALSE(deterministic());
    {
      DeterministicScope on;
      EXPECT_TRUE(deterministic());
    }
    EXPECT_FALSE(deterministic());
  }
  EXPECT_TRUE(deterministic());
  EXPECT_TRUE(set_deterministic(false));
  EXPECT_FALSE(deterministic());
}

std::vector<double> train_losses(const std::string& dir) {
  std::vector<double> out;
  for (const auto& r : train::read_jsonl(dir + "/metrics.jsonl"))
    if (r.at("split") == "train") out.push_back(r.at("loss").get<double>());
  return out;
}

std::vector<double> run_100_steps(const std::string& name) {
  namespace fs = std::filesystem;
  fs::path dir = fs::temp_directory_path() / ("loom_numerics_" + name);
  fs::remove_all(dir);
  train::TrainConfig c;
  c.model = "cnn";
  c.dataset = "synthetic:8x8x1:4:256";
  c.batch_size = 32;
  c.steps = 100;
  c.log_every = 1;
  c.eval_every = 1000;        // no evaluation or checkpoint inside the run: only the curve
  c.checkpoint_every = 1000;
  c.max_eval_examples = 32;
  c.seed = 7;
  c.run_dir = dir.string();
  c.resume = false;
  c.device = "cpu";
  c.terminal = false;
  std::ostringstream log;
  train::run_training(c, log);
  std::vector<double> losses = train_losses(dir.string());
  fs::remove_all(dir);
  return losses;
}

TEST(Numerics, DeterministicTrainingGivesABitwiseIdenticalLossCurve) {
  DeterministicScope det;
  std::vector<double> a = run_100_steps("a"), b = run_100_steps("b");
  ASSERT_EQ(a.size(), 100u);
  ASSERT_EQ(b.size(), 100u);
  for (size_t i = 0; i < a.size(); ++i) {
    ASSERT_TRUE(std::isfinite(a[i])) << "step " << i + 1;
    EXPECT_EQ(a[i], b[i]) << "step " << i + 1;  // exact, not approximate
  }
}

}  // namespace
}  // namespace loom
