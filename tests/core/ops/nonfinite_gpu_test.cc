// Special values through the CUDA ops against JAX, Flax and Optax, as the CPU's
// (tests/support/nonfinite_cases.h).
#include "tests/support/nonfinite_cases.h"
#include "tests/support/testing.h"

namespace loom {
namespace {

TEST(NonFiniteGpu, OpsMatchJax) {
  LOOM_REQUIRE_GPU();
  testing::expect_nonfinite_cases_match_jax(Device::cuda());
}

}  // namespace
}  // namespace loom
