// Loss curves of real training runs, for the trainer and determinism tests on the CPU and the GPU.
#pragma once
#include <string>
#include <vector>

namespace loom::testing {

/// The train loss of every step of a 100-step CNN run (synthetic 8x8 images, batch 32, seed 7,
/// no evaluation or checkpoint inside the run) on `device`, in a fresh temporary run directory
/// named after `name` that is removed afterwards.
std::vector<double> hundred_step_loss_curve(const std::string& device, const std::string& name);

/// An empty run directory under the temporary folder, named after `name`.
std::string fresh_run_dir(const std::string& name);
/// The train loss of every metrics line a run wrote to `run_dir`/metrics.jsonl.
std::vector<double> train_losses(const std::string& run_dir);

}  // namespace loom::testing
