#include "tests/support/loss_curve.h"

#include <unistd.h>

#include <filesystem>
#include <sstream>
#include <string>

#include "train/metrics/jsonl_writer.h"
#include "train/trainer.h"

namespace loom::testing {

namespace fs = std::filesystem;

std::string fresh_run_dir(const std::string& name) {
  // The process id keeps two test runs on one machine out of each other's directories.
  fs::path p = fs::temp_directory_path() / ("loom_run_" + name + "_" + std::to_string(getpid()));
  fs::remove_all(p);
  return p.string();
}

std::vector<double> train_losses(const std::string& run_dir) {
  std::vector<double> out;
  for (const auto& r : train::read_jsonl(run_dir + "/metrics.jsonl"))
    if (r.at("split") == "train") out.push_back(r.at("loss").get<double>());
  return out;
}

std::vector<double> hundred_step_loss_curve(const std::string& device, const std::string& name) {
  const std::string dir = fresh_run_dir("loss_curve_" + device + "_" + name);
  train::TrainConfig c;
  c.model = "cnn";
  c.dataset = "synthetic:8x8x1:4:256";
  c.batch_size = 32;
  c.steps = 100;
  c.log_every = 1;
  c.eval_every = 1000;  // no evaluation or checkpoint inside the run: only the curve
  c.checkpoint_every = 1000;
  c.max_eval_examples = 32;
  c.seed = 7;
  c.run_dir = dir;
  c.resume = false;
  c.device = device;
  c.terminal = false;
  std::ostringstream log;
  train::run_training(c, log);
  std::vector<double> losses = train_losses(dir);
  fs::remove_all(dir);
  return losses;
}

}  // namespace loom::testing
