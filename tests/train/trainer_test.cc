// The training loop end to end on small synthetic data: it learns, it writes its artefacts, a
// run stopped and resumed from its checkpoint continues bit-exactly, its peak memory does not grow
// with its steps, and a preferred attention implementation that cannot run falls back to the
// composed one.
#include "train/trainer.h"

#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/memory.h"
#include "core/ops/attention.h"
#include "train/checkpoint.h"
#include "tests/support/loss_curve.h"
#include "tests/support/testing.h"

namespace loom::train {
namespace {

namespace fs = std::filesystem;

/// A small text file for the language model.
std::string text_corpus() {
  const fs::path p = fs::temp_directory_path() / "loom_trainer_test_text.txt";
  std::ofstream f(p);
  for (int i = 0; i < 100; ++i) f << "the quick brown fox jumps over the lazy dog " << i << "\n";
  return p.string();
}

TrainConfig small_config(const std::string& dir) {
  TrainConfig c;
  c.dataset = "synthetic:8x8x1:4:64";
  c.batch_size = 16;
  c.steps = 8;
  c.learning_rate = 1e-2;
  c.warmup_steps = 2;
  c.run_dir = dir;
  c.log_every = 1;
  c.checkpoint_every = 4;
  c.eval_every = 4;
  c.device = "cpu";
  c.terminal = false;
  return c;
}

TEST(Trainer, LearnsAndWritesItsArtefacts) {
  std::string dir = testing::fresh_run_dir("learns");
  TrainConfig c = small_config(dir);
  c.dataset = "synthetic:8x8x1:4:32";
  c.steps = 40;
  c.schedule = "constant";
  c.learning_rate = 1e-2;
  std::ostringstream log;
  TrainSummary s = run_training(c, log);
  EXPECT_EQ(s.steps, 40);
  std::vector<double> losses = testing::train_losses(dir);
  ASSERT_EQ(losses.size(), 40u);
  // The class shows in the brightness: the last steps' loss is far below the first steps'.
  double first = (losses[0] + losses[1] + losses[2] + losses[3]) / 4;
  double last = (losses[36] + losses[37] + losses[38] + losses[39]) / 4;
  EXPECT_LT(last, 0.6 * first) << first << " -> " << last;
  EXPECT_GT(s.test.examples, 0);
  EXPECT_TRUE(fs::exists(dir + "/training.png"));
  bool events = false;
  for (const auto& e : fs::directory_iterator(dir))
    events |= e.path().filename().string().rfind("events.out.tfevents.", 0) == 0;
  EXPECT_TRUE(events);
  CheckpointManager ck(dir + "/checkpoints");
  EXPECT_EQ(ck.latest_step(), 40);
}

TEST(Trainer, ResumeContinuesBitExactly) {
  std::string straight = testing::fresh_run_dir("straight"), resumed = testing::fresh_run_dir("resumed");
  std::ostringstream log;
  run_training(small_config(straight), log);

  // A run interrupted after its step-4 checkpoint: run it, then delete what came later.
  TrainConfig full = small_config(resumed);
  {
    run_training(full, log);
    CheckpointManager ck(resumed + "/checkpoints");
    ASSERT_TRUE(ck.latest_step());
    fs::remove(ck.metadata_path(8));
    fs::remove(ck.data_path(8));
  }
  TrainSummary s = run_training(full, log);  // resumes from step 4
  EXPECT_NE(log.str().find("resumed"), std::string::npos);
  EXPECT_EQ(s.steps, 8);
  // The last 4 training losses of the resumed run equal those of the uninterrupted run.
  std::vector<double> a = testing::train_losses(straight), b = testing::train_losses(resumed);
  ASSERT_GE(b.size(), 4u);
  for (size_t i = 0; i < 4; ++i) EXPECT_EQ(a[a.size() - 1 - i], b[b.size() - 1 - i]) << i;
  auto [pa, ma] = CheckpointManager(straight + "/checkpoints").restore();
  auto [pb, mb] = CheckpointManager(resumed + "/checkpoints").restore();
  EXPECT_TRUE(tree_allclose(pa, pb, 0, 0));
}

// `--no-resume` over a finished run: the new run trains from step 0 and its checkpoints replace
// the earlier run's, later steps included (the first save used to be refused).
TEST(Trainer, StartingAfreshReplacesAnEarlierRunsCheckpoints) {
  std::string dir = testing::fresh_run_dir("afresh");
  std::ostringstream log;
  TrainConfig first = small_config(dir);
  first.steps = 12;
  run_training(first, log);
  TrainConfig again = small_config(dir);
  again.resume = false;
  again.seed = first.seed + 1;
  std::ostringstream log2;
  TrainSummary s = run_training(again, log2);
  EXPECT_EQ(s.steps, 8);
  EXPECT_NE(log2.str().find("starting afresh"), std::string::npos) << log2.str();
  EXPECT_EQ(log2.str().find("resumed"), std::string::npos);
  CheckpointManager ck(dir + "/checkpoints");
  EXPECT_EQ(ck.latest_step(), 8);
  EXPECT_EQ(ck.restore().second.at("rng_seed").get<uint64_t>(), again.seed);
  EXPECT_EQ(testing::train_losses(dir).size(), 8u);
}

// The most tensor bytes alive at once on the CPU during a run of `c`.
size_t peak_live_bytes(const TrainConfig& c) {
  std::ostringstream log;
  AllocationTrace trace;
  run_training(c, log);
  return live_peak(trace.events()).bytes;
}

TEST(Trainer, HoldsNoCopyOfTheInitialParams) {
  // Every step holds the same tensors, so a run's peak does not grow with its steps, unless
  // something keeps init's params beside the state's from the second step on (a float32 copy
  // of every param for the whole run: 475 MiB for GPT-2 small).
  TrainConfig c = small_config(testing::fresh_run_dir("peak"));
  c.eval_every = c.checkpoint_every = 1000;
  c.steps = 1;
  const size_t one_step = peak_live_bytes(c);
  c.run_dir = testing::fresh_run_dir("peak4");
  c.steps = 4;
  const size_t four_steps = peak_live_bytes(c);
  // The loader's thread prepares batches (16 x 8x8x1 floats and their labels) while a step runs:
  // up to four more of them may be live at one run's peak and not at the other's. The initial
  // params (the CNN's, about 145 KB here) would be many times that.
  const size_t batches = 4 * 16 * (8 * 8 * 4 + 4);
  EXPECT_LE(four_steps, one_step + batches);
  EXPECT_GE(four_steps + batches, one_step);
}

TEST(Trainer, BadSettingsAreNamed) {
  std::ostringstream log;
  TrainConfig c = small_config(testing::fresh_run_dir("bad"));
  c.batch_size = 0;
  EXPECT_THROW(run_training(c, log), ValueError);
  c = small_config(testing::fresh_run_dir("bad"));
  c.model = "nope";
  try {
    run_training(c, log);
    FAIL();
  } catch (const ValueError& e) {
    EXPECT_NE(std::string(e.what()).find("nope"), std::string::npos);
  }
  c = small_config(testing::fresh_run_dir("bad"));
  c.dataset = "nothing";
  EXPECT_THROW(run_training(c, log), ValueError);
  c = small_config(testing::fresh_run_dir("bad"));
  c.dropout = 1;
  EXPECT_THROW_WITH(run_training(c, log), ValueError, "--dropout");
  c = small_config(testing::fresh_run_dir("bad"));
  c.attention = "flash";
  EXPECT_THROW_WITH(run_training(c, log), ValueError, "--attention", "flash", "cudnn");
}

TEST(Trainer, PreferredAttentionRunsComposedWhereItCannot) {
  // On the CPU cuDNN's attention cannot run: the language model trains exactly as composed,
  // and the process default is restored afterwards.
  std::vector<double> losses[2];
  for (int i = 0; i < 2; ++i) {
    std::ostringstream log;
    const std::string dir = testing::fresh_run_dir(i == 0 ? "attention_composed" : "attention_cudnn");
    TrainConfig c = small_config(dir);
    c.model = "transformer-lm";
    c.dataset = "text:" + text_corpus();
    c.max_eval_examples = 32;
    c.sequence_length = 16;
    c.attention = i == 0 ? "composed" : "cudnn";
    run_training(c, log);
    losses[i] = testing::train_losses(dir);
  }
  ASSERT_FALSE(losses[0].empty());
  EXPECT_EQ(losses[0], losses[1]);
  EXPECT_EQ(attention_implementation(), AttentionImplementation::Composed);
}

}  // namespace
}  // namespace loom::train
