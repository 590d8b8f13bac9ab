// `loom train` on a GPU replays each step as one CUDA graph (TrainConfig::jit): the same losses
// and parameters as the eager loop, for a stateless CNN, a ResNet whose batch statistics come
// back from bf16 (selected in the step), float16 with dynamic loss scaling, and a language
// model with dropout (its key passed into the graph as a tensor); and the language model with
// cuDNN's attention preferred.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/determinism.h"
#include "train/checkpoint.h"
#include "train/trainer.h"
#include "tests/support/loss_curve.h"
#include "tests/support/testing.h"

namespace loom::train {
namespace {

namespace fs = std::filesystem;

std::string text_file() {
  fs::path p = fs::temp_directory_path() / "loom_trainer_gpu_text.txt";
  std::ofstream f(p);
  for (int i = 0; i < 200; ++i) f << "the quick brown fox jumps over the lazy dog " << i << "\n";
  return p.string();
}

/// Ten steps of batch 16 on cuda, a loss per step, an eval and a checkpoint at step 5 and 10.
TrainConfig short_gpu_run(const std::string& model, const std::string& dataset,
                          const std::string& precision, const std::string& run_name) {
  TrainConfig cfg;
  cfg.model = model;
  cfg.dataset = dataset;
  cfg.precision = precision;
  cfg.batch_size = 16;
  cfg.sequence_length = 32;
  cfg.steps = 10;
  cfg.log_every = 1;
  cfg.eval_every = 5;
  cfg.checkpoint_every = 5;
  cfg.max_eval_examples = 64;
  cfg.device = "cuda";
  cfg.terminal = false;
  cfg.run_dir = testing::fresh_run_dir(run_name);
  return cfg;
}

TEST(TrainerGpu, JitReplaysTheEagerSteps) {
  LOOM_REQUIRE_GPU();
  struct Case {
    const char* model;
    std::string dataset;
    const char* precision;
    bool deterministic;
    double param_atol;
  };
  const Case cases[] = {{"cnn", "synthetic:8x8x1:4:64", "f32", true, 1e-6},
                        {"resnet18", "synthetic:16x16x3:4:64", "bf16", true, 1e-6},
                        {"cnn", "synthetic:8x8x1:4:64", "f16", true, 1e-6},
                        {"transformer-lm", "text:" + text_file(), "f32", false, 5e-3}};
  for (const Case& c : cases) {
    SCOPED_TRACE(std::string(c.model) + " " + c.precision);
    std::vector<double> losses[2];
    Tree params[2];
    for (int jit = 0; jit < 2; ++jit) {
      TrainConfig cfg = short_gpu_run(c.model, c.dataset, c.precision,
                                      std::string(c.model) + c.precision + std::to_string(jit));
      cfg.jit = jit == 1;
      std::ostringstream log;
      // Deterministic cuDNN algorithms, so that eager and replayed runs add in the same order
      // (AdamW would turn a last-bit difference in a near-zero gradient into a step of ~lr);
      // the language model's embedding gradient adds atomically either way.
      DeterministicScope deterministic(c.deterministic);
      TrainSummary summary = run_training(cfg, log);
      EXPECT_EQ(summary.graph_replayed, jit == 1) << log.str();
      losses[jit] = testing::train_losses(cfg.run_dir);
      params[jit] = CheckpointManager(cfg.run_dir + "/checkpoints").restore().first;
    }
    // The same kernels in the same order; only atomic adds (the embedding's gradient) may sum
    // in another order, which AdamW can turn into steps of ~lr on single parameters.
    ASSERT_EQ(losses[1].size(), losses[0].size());
    for (size_t i = 0; i < losses[0].size(); ++i)
      EXPECT_NEAR(losses[1][i], losses[0][i], 1e-4 * (1 + std::abs(losses[0][i]))) << "step " << i;
    EXPECT_TRUE(tree_allclose(params[1], params[0], 1e-5, c.param_atol));
  }
}

TEST(TrainerGpu, CuDnnAttentionTrainsTheLanguageModelAsComposed) {
  // `--attention cudnn` in bf16 under loom::jit: cuDNN's flash attention takes the model's
  // calls (not its float32 init) and the losses follow the composed run's within bf16 rounding.
  LOOM_REQUIRE_GPU();
  std::vector<double> losses[2];
  for (int i = 0; i < 2; ++i) {
    const std::string attention = i == 0 ? "composed" : "cudnn";
    TrainConfig cfg = short_gpu_run("transformer-lm", "text:" + text_file(), "bf16", "attention_" + attention);
    cfg.attention = attention;
    cfg.dropout = 0;  // cuDNN's attention has no dropout (loom's masks are JAX's threefry bits)
    std::ostringstream log;
    TrainSummary summary = run_training(cfg, log);
    EXPECT_TRUE(summary.graph_replayed) << log.str();
    losses[i] = testing::train_losses(cfg.run_dir);
  }
  ASSERT_EQ(losses[1].size(), losses[0].size());
  ASSERT_FALSE(losses[0].empty());
  for (size_t i = 0; i < losses[0].size(); ++i)
    EXPECT_NEAR(losses[1][i], losses[0][i], 2e-2 * (1 + std::abs(losses[0][i]))) << "step " << i;
  EXPECT_LT(losses[1].back(), losses[1].front());
}

}  // namespace
}  // namespace loom::train
