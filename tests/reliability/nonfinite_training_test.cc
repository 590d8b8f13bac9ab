// Non-finite gradients in a real training run (`loom train --skip-nonfinite` and
// `--precision f16`): gradients of chosen steps are replaced by Inf/NaN through
// TrainConfig::grads_hook. Those steps must be skipped (the params after them equal the params
// before), counted in the optimizer state and the metrics, and reported on the log; the steps
// after them must train and the run must end with a finite loss. With loss scaling, an injected
// overflow halves the scale and `period` finite steps double it.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <limits>
#include <set>
#include <sstream>

#include "core/ops/elementwise.h"
#include "optim/loss_scale.h"
#include "tests/support/testing.h"
#include "train/metrics/jsonl_writer.h"
#include "train/trainer.h"

namespace loom::train {
namespace {

namespace fs = std::filesystem;

TrainConfig tiny_run(const std::string& name) {
  fs::path dir = fs::temp_directory_path() / ("loom_nonfinite_" + name);
  fs::remove_all(dir);
  TrainConfig c;
  c.model = "cnn";
  c.dataset = "synthetic:8x8x1:4:64";
  c.batch_size = 16;
  c.steps = 12;
  c.optimizer = "adam";
  c.schedule = "constant";
  c.learning_rate = 1e-2;
  c.log_every = 1;
  c.eval_every = 1000;  // only the final evaluation, on a few examples
  c.checkpoint_every = 1000;
  c.max_eval_examples = 16;
  c.run_dir = dir.string();
  c.resume = false;
  c.device = "cpu";
  c.terminal = false;
  return c;
}

/// Every param value, in flatten order (a copy: the state moves on).
std::vector<float> flat_params(const TrainState& s) {
  std::vector<float> out;
  for (const Tensor& p : s.params.leaves())
    for (float v : p.to(DType::F32).to_vector<float>()) out.push_back(v);
  return out;
}

/// What the hook saw before each step: the params and the optimizer's counters.
struct Trace {
  std::vector<std::vector<float>> params;
  std::vector<int64_t> skipped;
  std::vector<float> loss_scale;
};

/// A hook that records the state and poisons the gradients of the steps in `inf` / `nan`.
std::function<void(int64_t, const TrainState&, Tree&)> injector(Trace& trace, std::set<int64_t> inf,
                                                               std::set<int64_t> nan) {
  return [&trace, inf, nan](int64_t step, const TrainState& s, Tree& grads) {
    EXPECT_EQ(size_t(step), trace.params.size());
    trace.params.push_back(flat_params(s));
    if (s.opt_state.contains("total_notfinite"))
      trace.skipped.push_back(s.opt_state["total_notfinite"].tensor().item<int64_t>());
    if (s.opt_state.contains("loss_scale"))
      trace.loss_scale.push_back(optim::current_loss_scale(s.opt_state).item<float>());
    auto [path, g] = grads.flatten()[0];
    if (inf.count(step)) grads.set(path, g + std::numeric_limits<float>::infinity());
    if (nan.count(step)) grads.set(path, g * std::numeric_limits<float>::quiet_NaN());
  };
}

std::vector<nlohmann::json> train_records(const TrainConfig& c) {
  std::vector<nlohmann::json> out;
  for (const auto& r : read_jsonl(c.run_dir + "/metrics.jsonl"))
    if (r.at("split") == "train") out.push_back(r);
  return out;
}

TEST(NonFiniteTraining, SkipNonFiniteSkipsCountsAndKeepsTraining) {
  TrainConfig c = tiny_run("skip");
  c.skip_nonfinite = true;
  Trace t;
  c.grads_hook = injector(t, /*inf=*/{3}, /*nan=*/{4, 8});
  std::ostringstream log;
  TrainSummary s = run_training(c, log);
  ASSERT_EQ(t.params.size(), 12u);
  // params[k] is the state before step k: a skipped step k leaves params[k + 1] == params[k].
  for (int64_t k : {3, 4, 8}) EXPECT_EQ(t.params[k + 1], t.params[k]) << "step " << k << " applied";
  for (int64_t k : {2, 5, 6, 9, 10}) EXPECT_NE(t.params[k + 1], t.params[k]) << "step " << k << " skipped";
  EXPECT_EQ(t.skipped, (std::vector<int64_t>{0, 0, 0, 0, 1, 2, 2, 2, 2, 3, 3, 3}));
  // The metrics line of each step carries the count so far.
  std::vector<nlohmann::json> recs = train_records(c);
  ASSERT_EQ(recs.size(), 12u);
  std::vector<int64_t> logged;
  for (const auto& r : recs) logged.push_back(r.at("skipped_steps").get<int64_t>());
  EXPECT_EQ(logged, (std::vector<int64_t>{0, 0, 0, 1, 2, 2, 2, 2, 3, 3, 3, 3}));
  EXPECT_FALSE(recs[0].contains("loss_scale"));
  for (const auto& r : recs) EXPECT_TRUE(r.at("loss").is_number()) << r;  // null for NaN
  EXPECT_TRUE(std::isfinite(s.train_loss));
  EXPECT_TRUE(std::isfinite(s.test.loss));
  std::string out = log.str();
  for (const char* line : {"step 4: skipped 1 step(s) with non-finite gradients (1 in all)",
                           "step 5: skipped 1 step(s) with non-finite gradients (2 in all)",
                           "step 9: skipped 1 step(s) with non-finite gradients (3 in all)"})
    EXPECT_NE(out.find(line), std::string::npos) << out;
}

TEST(NonFiniteTraining, WithoutSkippingOneInfRuinsTheRun) {
  // The control: the same injection without --skip-nonfinite reaches the params.
  TrainConfig c = tiny_run("noskip");
  c.steps = 6;
  Trace t;
  c.grads_hook = injector(t, {3}, {});
  std::ostringstream log;
  TrainSummary s = run_training(c, log);
  ASSERT_EQ(t.params.size(), 6u);
  EXPECT_TRUE(t.skipped.empty());  // no counter without the wrapper
  bool poisoned = false;
  for (float v : t.params[4]) poisoned |= !std::isfinite(v);
  EXPECT_TRUE(poisoned);
  EXPECT_FALSE(std::isfinite(s.train_loss));
  EXPECT_FALSE(train_records(c).back().contains("skipped_steps"));
}

TEST(NonFiniteTraining, Float16LossScaleHalvesOnOverflowAndGrowsAfterThePeriod) {
  TrainConfig c = tiny_run("f16");
  c.precision = "f16";
  c.loss_scale_period = 3;
  Trace t;
  c.grads_hook = injector(t, /*inf=*/{4}, /*nan=*/{5});
  std::ostringstream log;
  TrainSummary s = run_training(c, log);
  ASSERT_EQ(t.loss_scale.size(), 12u);
  // 65536 to start; 3 finite steps double it; the two injected overflows halve it twice; then
  // 3 more finite steps double it again.
  EXPECT_EQ(t.loss_scale, (std::vector<float>{65536, 65536, 65536, 131072, 131072, 65536, 32768,
                                              32768, 32768, 65536, 65536, 65536}));
  for (int64_t k : {4, 5}) EXPECT_EQ(t.params[k + 1], t.params[k]) << "step " << k << " applied";
  for (int64_t k : {3, 6, 10}) EXPECT_NE(t.params[k + 1], t.params[k]) << "step " << k << " skipped";
  EXPECT_EQ(t.skipped.back(), 2);
  std::vector<nlohmann::json> recs = train_records(c);
  ASSERT_EQ(recs.size(), 12u);
  EXPECT_EQ(recs[4].at("loss_scale").get<double>(), 65536.0);  // after step 5 (index 4)
  EXPECT_EQ(recs[4].at("skipped_steps").get<int64_t>(), 1);
  EXPECT_EQ(recs.back().at("skipped_steps").get<int64_t>(), 2);
  EXPECT_TRUE(std::isfinite(s.train_loss));
  EXPECT_NE(log.str().find("step 5: skipped 1 step(s) with non-finite gradients (1 in all), "
                           "loss scale 65536"),
            std::string::npos)
      << log.str();
}

TEST(NonFiniteTraining, Bfloat16ComputeKeepsFloat32ParamsAndGradients) {
  TrainConfig c = tiny_run("bf16");
  c.precision = "bf16";
  c.steps = 6;
  Trace t;
  auto record = injector(t, {}, {});
  c.grads_hook = [&](int64_t step, const TrainState& s, Tree& grads) {
    for (const Tensor& g : grads.leaves()) EXPECT_EQ(g.dtype(), DType::F32);
    for (const Tensor& p : s.params.leaves()) EXPECT_EQ(p.dtype(), DType::F32);
    record(step, s, grads);
  };
  std::ostringstream log;
  TrainSummary s = run_training(c, log);
  EXPECT_TRUE(t.loss_scale.empty() && t.skipped.empty());  // no loss scaling for bfloat16
  ASSERT_EQ(t.params.size(), 6u);
  EXPECT_NE(t.params[5], t.params[0]);
  EXPECT_TRUE(std::isfinite(s.train_loss));
}

}  // namespace
}  // namespace loom::train
