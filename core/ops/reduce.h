// Reductions over any set of axes (negative axes allowed; empty axes list = all axes).
#pragma once
#include <vector>

#include "core/tensor.h"

namespace loom {

using Axes = std::vector<int64_t>;

Tensor sum(const Tensor& x, const Axes& axes = {}, bool keepdims = false);
Tensor mean(const Tensor& x, const Axes& axes = {}, bool keepdims = false);
/// max/min: NaN propagates; the gradient is split evenly between tied maxima (as JAX).
Tensor max(const Tensor& x, const Axes& axes = {}, bool keepdims = false);
Tensor min(const Tensor& x, const Axes& axes = {}, bool keepdims = false);

/// Sorted, normalised, de-duplicated axes (all axes when `axes` is empty); throws naming `op`.
Axes normalize_axes(const Axes& axes, int64_t ndim, const char* op);
/// Shape after reducing `axes` (kept as 1 with keepdims).
Shape reduced_shape(const Shape& shape, const Axes& axes, bool keepdims);

}  // namespace loom
