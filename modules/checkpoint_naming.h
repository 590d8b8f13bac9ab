// Loading pre-Linen checkpoints (the seed's last section): old flax.nn numbered submodules with
// one counter shared by all classes ({"Conv_0", "Dense_1"}); Linen keeps one counter per class
// ({"Conv_0", "Dense_0"}). rename_pre_linen renumbers every "<Class>_<n>" key per class, in the
// order of the old numbers, at every level of the tree, keeping the order of the entries and
// leaving other keys ("kernel", explicit names) alone.
//
// Example:
//   Tree params = load_old_checkpoint(...)["params"];  // {"Conv_0", "Conv_1", "Dense_2"}
//   Tree linen = nn::rename_pre_linen(params);          // {"Conv_0", "Conv_1", "Dense_0"}
//   Tensor y = CNN{}.apply(with_params(linen), x);
#pragma once
#include "core/tree.h"

namespace loom::nn {

/// Throws ValueError naming the path when a new name would collide with an existing key.
Tree rename_pre_linen(const Tree& params);

}  // namespace loom::nn
