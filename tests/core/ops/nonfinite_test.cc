// Special values through the ops on the CPU against JAX, Flax and Optax
// (tests/support/nonfinite_cases.h; the GPU's: nonfinite_gpu_test.cc).
#include "tests/support/nonfinite_cases.h"
#include "tests/support/testing.h"

namespace loom {
namespace {

TEST(NonFinite, OpsMatchJax) { testing::expect_nonfinite_cases_match_jax(Device::cpu()); }

}  // namespace
}  // namespace loom
