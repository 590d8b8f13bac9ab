// The debug-NaNs checker (core/debug_nans.h) called directly, the way the per-op hook in
// core/autodiff.{h,cc} calls it. The wired-in behaviour is tested in numerics_test.cc.
#include "core/debug_nans.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "core/ops/elementwise.h"
#include "tests/support/testing.h"

namespace loom {
namespace {

TEST(DebugNans, OffByDefaultAndScoped) {
  EXPECT_FALSE(debug_nans_enabled());
  Tensor bad = from_vector<float>({std::nanf("")}, {1});
  check_op_output("log", bad, {});  // off: no check
  {
    DebugNansScope on;
    EXPECT_TRUE(debug_nans_enabled());
    EXPECT_THROW(check_op_output("log", bad, {}), FloatingPointError);
  }
  EXPECT_FALSE(debug_nans_enabled());
}

TEST(DebugNans, NamesTheOpPhaseAndInputStatistics) {
  Tensor x = from_vector<float>({-1.0f, 4.0f}, {2});
  Tensor y = log(x);  // log(-1) = NaN, computed before the mode is on (log itself would throw)
  DebugNansScope on;
  EXPECT_THROW_WITH(check_op_output("log", y, {x}), FloatingPointError, "debug_nans: log (forward)",
                    "1 NaN and 0 Inf", "[2] float32 cpu", "input 0: [2] float32 cpu min -1 max 4",
                    "set_debug_nans(false)");
  Tensor inf = from_vector<double>({1.0, std::numeric_limits<double>::infinity()}, {2});
  EXPECT_THROW_WITH(check_op_output("div", inf, {x, x}, "backward"), FloatingPointError,
                    "div (backward)", "0 NaN and 1 Inf", "float64", "input 1:");
  // Finite, integer and undefined outputs pass.
  check_op_output("exp", exp(x), {x});
  check_op_output("argmax", from_vector<int32_t>({1}, {1}), {x});
  check_op_output("none", Tensor(), {});
}

TEST(DebugNans, TensorStatsIgnoresNonFiniteValuesInMinMaxMean) {
  Tensor t = from_vector<float>({1.0f, std::nanf(""), 3.0f}, {3});
  EXPECT_EQ(tensor_stats(t), "[3] float32 cpu min 1 max 3 mean 2 nan 1 inf 0");
  EXPECT_EQ(tensor_stats(Tensor()), "undefined");
}

}  // namespace
}  // namespace loom
