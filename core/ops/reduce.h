// Reductions over any set of axes (negative axes allowed; empty axes list = all axes).
#pragma once
#include <vector>

#include "core/tensor.h"
#include "core/tree.h"

namespace loom {

using Axes = std::vector<int64_t>;

Tensor sum(const Tensor& x, const Axes& axes = {}, bool keepdims = false);
Tensor mean(const Tensor& x, const Axes& axes = {}, bool keepdims = false);
/// max/min: NaN propagates; the gradient is split evenly between tied maxima (as JAX).
Tensor max(const Tensor& x, const Axes& axes = {}, bool keepdims = false);
Tensor min(const Tensor& x, const Axes& axes = {}, bool keepdims = false);
/// Biased variance (ddof 0) as jnp.var: mean(|x - mean(x)|^2). Integer inputs give float32; an
/// empty reduction gives NaN.
Tensor var(const Tensor& x, const Axes& axes = {}, bool keepdims = false);
/// log(sum(exp(x))) shifted by the (finite) maximum so it neither overflows nor underflows, as
/// jax.nn.logsumexp: rows of -inf give -inf, a +inf gives +inf, an empty reduction gives -inf.
/// The gradient is softmax(x) (NaN for an all -inf row, as in JAX).
Tensor logsumexp(const Tensor& x, const Axes& axes = {}, bool keepdims = false);
/// Index (int32) of the first maximum / minimum along `axis`; a NaN counts as the extreme, so the
/// first NaN wins (jnp.argmax / jnp.argmin). Not differentiable. An empty axis throws.
Tensor argmax(const Tensor& x, int64_t axis, bool keepdims = false);
Tensor argmin(const Tensor& x, int64_t axis, bool keepdims = false);
/// sqrt of the sum of squares of every leaf (optax.global_norm), a 0-d tensor on the leaves'
/// device. Leaves are squared and summed in float32 (float64 when any leaf is float64); an empty
/// tree gives 0. Differentiable (NaN gradient at an all-zero tree, as JAX).
Tensor global_norm(const Tree& t);
/// sqrt(sum(x^2)) over all elements (integer inputs give float32).
Tensor l2_norm(const Tensor& x);

/// Sorted, normalised, de-duplicated axes (all axes when `axes` is empty); throws naming `op`.
Axes normalize_axes(const Axes& axes, int64_t ndim, const char* op);
/// Shape after reducing `axes` (kept as 1 with keepdims).
Shape reduced_shape(const Shape& shape, const Axes& axes, bool keepdims);

}  // namespace loom
