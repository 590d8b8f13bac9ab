// The training loop end to end on small synthetic data: it learns, it writes its artefacts, and
// a run stopped and resumed from its checkpoint continues bit-exactly.
#include "train/trainer.h"

#include <filesystem>
#include <sstream>

#include "train/checkpoint.h"
#include "tests/support/loss_curve.h"
#include "tests/support/testing.h"

namespace loom::train {
namespace {

namespace fs = std::filesystem;

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
}

}  // namespace
}  // namespace loom::train
