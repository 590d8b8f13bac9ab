// nn::Remat: Flax's nn.remat (jax.checkpoint) for a block. Remat<Block>{.block = ...} holds the
// same params as the block (under "CheckpointBlock_<n>", as Flax names nn.remat(Block)), computes
// the same outputs and gradients, but keeps no activations from inside the block for the
// backward pass: only its input and params are saved, and the backward pass runs the block's
// forward again (recording) to differentiate it. Memory for activations drops from
// O(layers * activations) to O(inputs), at the cost of a second forward.
//
// The block's call is call(x, extra...) -> Tensor; x and the block's params are differentiated,
// the extra arguments (masks, flags) are held as they are: a tensor among them must carry no
// history of its own (the backward pass that differentiates the recomputed block reports one
// that does; an encoder's output for cross-attention goes in x). Writes to mutable collections
// (batch_stats) happen in the first forward only. Rngs: the block's keys are derived as if it
// ran unwrapped, and the recomputation reuses them, so dropout masks agree.
//
// Example:
//   Tensor y = nn::Remat<Block>{.block = Block{.features = 512}}(x);
//   // in scan-over-layers: nn::Scan<nn::Remat<Block>>{.length = 24}(x)
#pragma once
#include <functional>
#include <memory>
#include <string>

#include "modules/module.h"

namespace loom::nn {

namespace detail {
/// Runs `body` (the block's call on x) in `scope`: directly when nothing is differentiated or
/// during init; otherwise as one autodiff node that recomputes the block in its backward pass.
/// `block` must stay alive as long as `body` (both are kept by the backward closure).
Tensor remat_call(Scope& scope, std::shared_ptr<const void> block, const std::string& block_type,
                  std::function<Tensor(const Tensor&)> body, const Tensor& x);
}  // namespace detail

template <class Block>
struct Remat : Module<Remat<Block>> {
  Block block = {};

  static std::string module_name() { return "Checkpoint" + Block::type_name(); }

  template <class... Extra>
  Tensor call(const Tensor& x, const Extra&... extra) const {
    detail::SlotAccess::give_back(block);
    // The backward pass outlives this module value: it keeps its own copy of the block.
    auto copy = std::make_shared<const Block>(block);
    std::function<Tensor(const Tensor&)> body = [copy, extra...](const Tensor& in) {
      return Tensor(copy->call(in, extra...));
    };
    return detail::remat_call(detail::scope_of(this, "nn::Remat"), copy, Block::type_name(),
                              std::move(body), x);
  }
};

}  // namespace loom::nn
