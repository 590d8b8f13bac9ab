// The golden cases of special values (tests/golden/nonfinite.json, from
// scripts/golden/gen_nonfinite.py): NaN, +-inf, +-0 and float32's extremes through the
// elementwise ops, every pair of them through the binary ops, rows with NaN and infinities
// through the reductions, softmaxes and losses, windows with them through the pools, and
// products with infinities times zeros and attention with a fully masked row; and inputs at the
// kinks of piecewise functions (which side's derivative, how ties share a gradient), and one
// step of each optimizer from gradients with NaN and infinities; with
// JAX's, Flax's and Optax's outputs and input gradients (a cotangent of ones). A diverging run
// must show its NaNs and infinities where JAX's would, on either device.
#pragma once

#include "core/device.h"

namespace loom::testing {

/// Runs every case on `device` and expects JAX's outputs and gradients, NaN and infinity
/// positions exactly (gtest failures name the case).
void expect_nonfinite_cases_match_jax(Device device);

}  // namespace loom::testing
