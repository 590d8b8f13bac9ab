// nn::Scan: Flax's nn.scan for scan-over-layers. Scan<Block>{.block = ..., .length = L} runs the
// block L times on a carry, each step with its own params, stored stacked on a leading axis of
// length L under one module named "Scan<Block>_<n>" (e.g. ScanBlock_0/Dense_0/kernel [L, 4, 4]),
// as nn.scan(Block, variable_axes={"params": 0}, split_rngs={"params": True}, length=L).
// Rngs of the kinds in split_rngs are split per step like Flax (random.split of the stream's
// base key, the module path kept), so the stacked params equal Flax's.
//
// The block's call is call(carry, extra...) -> carry; the extra arguments (masks, flags) are the
// same for every step (Flax's nn.broadcast). Collections in variable_axes are stacked on axis 0
// (add "batch_stats" or "intermediates" to scan those); other collections may be read but not
// created inside the scan.
//
// Example:
//   struct Block : nn::Module<Block> {
//     Tensor call(const Tensor& x) const { return nn::relu(nn::Dense{.features = 64}(x)); }
//   };
//   Tensor y = nn::Scan<Block>{.length = 12}(x);          // in a module body
#pragma once
#include <functional>
#include <string>
#include <vector>

#include "modules/module.h"

namespace loom::nn {

namespace detail {
struct ScanSpec {
  int64_t length;
  std::vector<std::string> variable_axes, split_rngs;
  const void* block;
  std::string block_type;
};
/// Runs `step` spec.length times on the carry, each time as the root of a nested run in `scope`
/// with step i's slice of the stacked collections and split rngs; stacks what the steps create.
Tensor scan_layers(Scope& scope, const ScanSpec& spec,
                   const std::function<Tensor(const Tensor&)>& step, Tensor carry);
}  // namespace detail

template <class Block>
struct Scan : Module<Scan<Block>> {
  Block block = {};
  int64_t length = 0;
  /// Collections stacked on axis 0 (Flax's variable_axes={"params": 0}).
  std::vector<std::string> variable_axes = {"params"};
  /// Rng kinds split per step (Flax's split_rngs={"params": True}); others are the same each step.
  std::vector<std::string> split_rngs = {"params"};

  static std::string module_name() { return "Scan" + Block::type_name(); }
  /// capture_intermediates records each step's output inside the scan (stacked on axis 0 when
  /// "intermediates" is in variable_axes, as Flax), not the final carry outside it.
  static constexpr bool kCapturesInsideSteps = true;

  template <class... Extra>
  Tensor call(const Tensor& carry, const Extra&... extra) const {
    detail::SlotAccess::give_back(block);
    detail::ScanSpec spec{length, variable_axes, split_rngs, &block, Block::type_name()};
    return detail::scan_layers(
        detail::scope_of(this, "nn::Scan"), spec,
        [&](const Tensor& c) {
          return detail::captured(detail::current_run()->root(), Scan::type_name(),
                                  Tensor(block.call(c, extra...)));
        },
        carry);
  }
};

}  // namespace loom::nn
