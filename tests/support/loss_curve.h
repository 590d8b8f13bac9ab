// The loss curve of a short real training run, for the determinism tests on the CPU and the GPU.
#pragma once
#include <string>
#include <vector>

namespace loom::testing {

/// The train loss of every step of a 100-step CNN run (synthetic 8x8 images, batch 32, seed 7,
/// no evaluation or checkpoint inside the run) on `device`, in a fresh temporary run directory
/// named after `name` that is removed afterwards.
std::vector<double> hundred_step_loss_curve(const std::string& device, const std::string& name);

}  // namespace loom::testing
