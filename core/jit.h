// loom::jit: a step function replayed as one CUDA graph. After `warmup` ordinary calls (which
// settle cuDNN/cuBLAS choices and the allocator's pools), the next call records everything the
// function queues on the GPU as a CUDA graph, and later calls replay it with one launch instead
// of the host dispatching every op again: the host cost of a step becomes one graph launch.
//
//   Jit step = jit([&](const Tree& in) {
//     TrainState s = state.load_state_dict(in["state"]);
//     auto [loss, grads] = value_and_grad(loss_fn(in["batch"]))(s.params);
//     Tree out;
//     out.insert("state", s.apply_gradients(grads).state_dict());
//     out.insert("loss", loss);
//     return out;
//   });
//   for (...) { Tree out = step(in); in.insert("state", out["state"]); ... }
//
// The rules, as for jax.jit with donated buffers:
// - Inputs and outputs are trees of tensors on one GPU. Every call passes the same structure,
//   shapes and dtypes (ValueError naming the first difference otherwise).
// - The function's work must depend only on its inputs' values: a host value that changes from
//   call to call (a step number, say) is frozen at capture. Pass it as a tensor in the input
//   tree. Random keys too, as jax.jit traces them: in["rng"] = random::key_data(key).to(gpu),
//   and inside random::wrap_key_data(in["rng"].tensor()) is a key on the GPU whose draws (and
//   fold_in, split) read it at every replay. A draw on the GPU from a host key (dropout's mask)
//   would repeat the same numbers every replay, so it fails the capture with an error saying so.
// - The function must not wait for the GPU (item(), to(cpu), printing a CUDA tensor): that fails
//   the capture with a CudaError naming loom::jit, and the stream stays usable.
// - Outputs are the graph's own buffers: the next call overwrites them. Copy what must survive.
// - Inputs are copied into the graph's input buffers, unless they are those buffers (the
//   outputs of the previous call, with donate_inputs). With donate_inputs the capture call's
//   inputs become those buffers: like jax.jit's donated arrays, tensors passed in must not be
//   read after the call (later calls write into them).
// Without CUDA tensors (or before the capture) the function simply runs.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "core/tree.h"

namespace loom {

struct JitOptions {
  /// Ordinary calls before the capture. With 0, a library's first use in the process (cuDNN's
  /// handle, say) happens inside the capture, which may fail it: run such a step once first.
  int warmup = 2;
  /// The inputs are donated, as with jax.jit's donate_argnums: in the captured step, an op that
  /// replaces an input tensor wholesale may write over its buffer (the fused optimizer's applied
  /// updates, tx.apply / update_and_apply, write the new params and moments over the old ones;
  /// a plain update() does not, since wrappers such as apply_if_finite may still select the old
  /// state) instead of a new one. The step must
  /// not read an input after the op that replaces it. The outputs then share the inputs'
  /// buffers, so a loop that passes them back copies nothing in, and the old and new state are
  /// never both in memory. The capture call's input tensors themselves become the graph's
  /// input buffers (no copy), so the caller must not read them after the call either.
  bool donate_inputs = false;
  /// Replays launch the graph from the device where the driver allows it (kernels/cuda/graph.h):
  /// the host queues one small kernel instead of the whole graph, whose launch costs host time
  /// per node. Off by default until measured; JitGraphInfo::device_launched says whether it took.
  bool device_launch = false;
};

/// While a loom::jit step with donate_inputs is being captured: whether `t` is the whole of one
/// of its input buffers, which an op producing its replacement may overwrite. False otherwise.
bool donated(const Tensor& t);
/// Whether a loom::jit step is being captured on this thread: ops that would bake a host value
/// into the graph (random draws from a host key) refuse to run.
bool jit_capturing();

/// A captured step's graph, for finding the host's share of a step: the graph's nodes by kind
/// (a launch costs the host time per node) and how long the last replay's launch call took.
struct JitGraphInfo {
  int64_t kernel_nodes = 0, copy_nodes = 0, memset_nodes = 0, other_nodes = 0;
  int64_t edges = 0;
  bool straight_line = false;  // one node after another: a launch costs the same at any length
  bool device_launched = false;  // replays launch from the device (JitOptions::device_launch)
  std::string device_launch_refusal;  // why not, when it was asked for
  double last_launch_ms = 0;
};

class Jit {
 public:
  using Fn = std::function<Tree(const Tree&)>;
  Jit(Fn fn, JitOptions options = {});
  ~Jit();
  Jit(Jit&&) noexcept;
  Jit& operator=(Jit&&) noexcept;

  Tree operator()(const Tree& inputs);
  /// Whether later calls replay a captured graph.
  bool captured() const;
  /// The captured graph's profile; empty before the capture (and without CUDA).
  std::optional<JitGraphInfo> graph_info() const;

 private:
  struct State;
  std::unique_ptr<State> s_;
};

inline Jit jit(Jit::Fn fn, JitOptions options = {}) { return Jit(std::move(fn), options); }

}  // namespace loom
