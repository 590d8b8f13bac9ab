// Debug-NaNs mode, like jax_debug_nans / jax_debug_infs: when enabled, every op's floating
// outputs are checked for NaN and Inf and the first offending op throws FloatingPointError
// naming the op, the output and its inputs' statistics (shape, dtype, device, min/max/mean and
// NaN/Inf counts). Off by default: the check copies every output to the host.
//
// Where the checks run (core/autodiff.{h,cc}):
//   forward  - autograd::record (every differentiable op's recording exit) and
//              autograd::checked (the early "nothing needs a gradient" returns of every op);
//   backward - autograd::backward checks each gradient a backward rule returns, and ops run
//              inside a backward rule report "(backward of 'op')" rather than "(forward)".
// When the mode is off each of those costs one relaxed load of a global flag.
//
// Example:
//   loom::set_debug_nans(true);
//   Tensor y = log(x);   // FloatingPointError: "debug_nans: log (forward) produced 1 NaN ..."
#pragma once

#include <atomic>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/switch_scope.h"
#include "core/tensor.h"

namespace loom {

/// A NaN or Inf produced while debug-NaNs mode is on.
class FloatingPointError : public ValueError {
  using ValueError::ValueError;
};

namespace detail {
// Inline-readable so that the per-op hook costs one load and one branch when the mode is off.
extern std::atomic<bool> g_debug_nans;
}  // namespace detail

/// Process-wide switch (thread-safe); returns the previous value.
bool set_debug_nans(bool enabled);
inline bool debug_nans_enabled() { return detail::g_debug_nans.load(std::memory_order_relaxed); }

/// RAII: debug-NaNs on (or off) for a scope.
using DebugNansScope = SwitchScope<set_debug_nans>;

/// RAII used by autograd::backward while it runs the backward rule of `op` (thread-local), so
/// that a NaN produced by an op inside that rule is reported as "(backward of 'op')".
class BackwardOpScope {
 public:
  explicit BackwardOpScope(const char* op);
  ~BackwardOpScope();
  BackwardOpScope(const BackwardOpScope&) = delete;
  BackwardOpScope& operator=(const BackwardOpScope&) = delete;

 private:
  const char* previous_;
};

/// "[2, 3] float32 cpu min -1 max 4 mean 0.5 nan 0 inf 0" (statistics of the finite values).
std::string tensor_stats(const Tensor& t);

/// Throws FloatingPointError when `out` (undefined and integer tensors are skipped) holds a NaN
/// or Inf; `phase` is "forward" or "backward" (a "forward" check made inside a backward rule
/// reads "backward of '<rule's op>'"). Does nothing when the mode is off.
void check_op_output(const char* op, const Tensor& out, const std::vector<Tensor>& inputs,
                     const char* phase = "forward");

/// The backward-pass check of one gradient: `grad` is what the backward rule of `op` returned
/// for its input number `input_index`, `grad_output` the gradient that flowed into the rule.
void check_op_gradient(const char* op, const Tensor& grad, size_t input_index,
                       const Tensor& grad_output);

}  // namespace loom
