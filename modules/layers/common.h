// Helpers shared by the layers: Flax's promote_dtype and axis canonicalisation.
#pragma once
#include <optional>
#include <string>
#include <vector>

#include "core/ops/reduce.h"
#include "core/tensor.h"

namespace loom::nn::detail {

/// Flax's promote_dtype: casts every defined tensor to `dtype`, or (none given) to the
/// promoted type of all of them. Undefined tensors stay undefined.
std::vector<Tensor> promote_dtype(std::vector<Tensor> xs, std::optional<DType> dtype);

/// Normalised axes (negative ones count from the end), checked against `ndim`; throws
/// IndexError naming `where`.
Axes canonical_axes(const Axes& axes, int64_t ndim, const std::string& where);

}  // namespace loom::nn::detail
