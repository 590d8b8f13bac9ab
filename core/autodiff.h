// Reverse-mode autodiff. While value_and_grad runs a function, every op whose inputs carry a
// gradient history records a Node holding its backward rule (written next to the op's forward).
// Outside value_and_grad nothing is recorded and ops pay one thread-local check.
//
// Debug-NaNs (core/debug_nans.h) hooks in here: every op leaves through record() or checked(),
// and backward() checks each gradient a rule returns. So does an allocation trace
// (core/memory.h): a new output is named after its op, and a rule's allocations after its op.
//
// Rule for op authors: a backward closure must capture *detached* tensors (saved(t)), never
// the op's own output with its history, or the node would keep itself alive.
#pragma once
#include <functional>
#include <memory>
#include <vector>

#include "core/debug_nans.h"
#include "core/memory.h"
#include "core/tensor.h"

namespace loom {
namespace autograd {

/// One gradient per differentiable input, in the order of Node::inputs (undefined = zero).
using BackwardFn = std::function<std::vector<Tensor>(const Tensor& grad_output)>;

/// A process-wide counter (thread-safe) numbering nodes in the order they are created.
uint64_t next_serial();

struct Node {
  const char* op = "";
  std::vector<std::shared_ptr<Node>> inputs;  // null where an input has no history
  BackwardFn backward;                        // empty for leaves; reset after it has run
  Shape shape;                                // of the output
  DType dtype = DType::F32;
  Device device;
  int64_t leaf_index = -1;                    // >= 0: the differentiated argument's leaf number
  uint64_t serial = next_serial();            // creation order: a graph is newer than its leaves
  // Set on the node of a tanh GELU that a product's epilogue applied: the GELU's input, detached
  // (inputs[0] is its history). A later product that takes this node's output may then apply
  // the GELU's derivative in its own epilogue and send the gradient to inputs[0] directly
  // (core/ops/linalg.cc). Released with `backward`.
  Tensor epilogue_gelu_input;
};

/// True while some value_and_grad is tracing.
bool is_recording();
/// True when recording and at least one of `inputs` carries a history.
bool needs_grad(std::initializer_list<const Tensor*> inputs);
bool needs_grad(const std::vector<Tensor>& inputs);
/// Attaches a node for `op` to `out` (when needs_grad(inputs)) and returns `out`. In debug-NaNs
/// mode it first checks `out` for NaN/Inf.
Tensor record(const char* op, Tensor out, const std::vector<Tensor>& inputs, BackwardFn backward);

namespace detail {
void check_slow(const char* op, const Tensor& out, std::initializer_list<const Tensor*> inputs);
/// Names out's storage after `op` in the active allocation trace (core/memory.h), unless it is
/// an input's (a view or an in-place result): a storage carries the outermost op that made it
/// ("conv", not the "cast" inside it that wrote it), not the views taken of it later.
void name_output(const char* op, const Tensor& out, std::initializer_list<const Tensor*> inputs);
void name_output(const char* op, const Tensor& out, const std::vector<Tensor>& inputs);
}  // namespace detail

/// The exit of an op that records nothing (no input needs a gradient, or the output is not
/// differentiable): returns `out`, after the debug-NaNs check when that mode is on. Costs one
/// branch on a global flag otherwise. Usage: `return autograd::checked("log", std::move(out), {&x});`
inline Tensor checked(const char* op, Tensor out, std::initializer_list<const Tensor*> inputs) {
  if (debug_nans_enabled()) [[unlikely]]
    detail::check_slow(op, out, inputs);
  if (allocation_trace_active()) [[unlikely]]
    detail::name_output(op, out, inputs);
  return out;
}
inline Tensor checked(const char* op, Tensor out, const std::vector<Tensor>& inputs) {
  if (debug_nans_enabled()) [[unlikely]]
    check_op_output(op, out, inputs);
  if (allocation_trace_active()) [[unlikely]]
    detail::name_output(op, out, inputs);
  return out;
}
/// A detached copy for a backward closure to keep.
inline Tensor saved(const Tensor& t) { return t.detach(); }

/// Scope guards. RecordingGuard turns recording on; NoGradGuard turns it off (used while
/// running backward rules).
class RecordingGuard {
 public:
  explicit RecordingGuard(bool on);
  ~RecordingGuard();
  RecordingGuard(const RecordingGuard&) = delete;
  RecordingGuard& operator=(const RecordingGuard&) = delete;

 private:
  bool previous_;
};
struct NoGradGuard : RecordingGuard {
  NoGradGuard() : RecordingGuard(false) {}
};

/// Inside a backward rule: the gradient gathered so far for the rule's input `input`, offered
/// when the engine holds its only reference (undefined otherwise, and always in debug-NaNs mode,
/// which must blame each contribution on its own op). A rule whose kernel can add into its
/// output (cuDNN's or BLAS's beta = 1) may add its contribution there and return this tensor as
/// that input's gradient: the two contributions then cost no separate add pass (a residual
/// block's input gets one from each branch). A rule that returns anything else loses nothing;
/// the engine adds as usual.
Tensor accumulation_target(size_t input);

/// Makes a leaf that carries history for argument leaf `index`.
Tensor make_leaf(const Tensor& value, int64_t index);
/// Called by backward() once per leaf as soon as that leaf's gradient is final (no node still to
/// run can add to it), with the gradient backward() will return for it. Data-parallel training
/// uses it to start all-reducing gradients while the rest of the backward pass runs
/// (dist::GradientReducer). Leaves come in the walk's order, roughly the reverse of the forward
/// pass; leaves the output does not depend on come last (zeros).
using LeafReadyFn = std::function<void(int64_t leaf, const Tensor& grad)>;
/// Runs the backward pass from scalar `output` (seeded with ones) and returns the gradient of each
/// leaf 0..num_leaves-1 (zeros for leaves the output does not depend on). Frees saved tensors as
/// it goes; iterative, so deep graphs cannot overflow the stack.
std::vector<Tensor> backward(const Tensor& output, const std::vector<Tensor>& leaves,
                             const LeafReadyFn& on_ready = {});

}  // namespace autograd
}  // namespace loom
