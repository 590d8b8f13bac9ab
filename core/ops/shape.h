// Shape ops: views and rearrangements, forward and backward (reshape is Tensor::reshape).
//
// Views share the input's storage (no copy): broadcast_to, transpose, swapaxes, expand_dims,
// squeeze, slice / slice_axis (any positive stride) and split. Kernels read through strides;
// call .contiguous() for a packed copy. Tensors are values, so a view is never written through.
//
// Example:
//   Tensor x = arange(24).reshape({2, 3, 4});
//   Tensor t = transpose(x, {2, 0, 1});                 // [4, 2, 3], a view
//   std::vector<Tensor> halves = split(x, 2, -1);        // two [2, 3, 2] views
//   Tensor e = take(embedding, token_ids, 0);            // [batch, seq, features]
#pragma once
#include <utility>
#include <vector>

#include "core/ops/reduce.h"  // Axes
#include "core/tensor.h"
#include "kernels/cpu/pad.h"  // PadMode

namespace loom {

/// numpy broadcasting to `shape` (a view with zero strides; no copy).
Tensor broadcast_to(const Tensor& x, const Shape& shape);

/// Permutes the axes (jnp.transpose); an empty `perm` reverses them. A view.
Tensor transpose(const Tensor& x, const Axes& perm = {});
/// Exchanges two axes (negative axes allowed). A view.
Tensor swapaxes(const Tensor& x, int64_t axis1, int64_t axis2);
/// Inserts a size-1 axis at `axis` in [-(ndim+1), ndim]. A view.
Tensor expand_dims(const Tensor& x, int64_t axis);
/// Removes size-1 axes: all of them when `axes` is empty, else exactly those (each must have
/// size 1, ShapeError otherwise). A view.
Tensor squeeze(const Tensor& x, const Axes& axes = {});
/// Merges axes start_axis..end_axis (inclusive, negative allowed) into one.
Tensor flatten(const Tensor& x, int64_t start_axis = 0, int64_t end_axis = -1);

/// Joins tensors of equal shape except along `axis` (jnp.concatenate); dtypes are promoted.
Tensor concatenate(const std::vector<Tensor>& tensors, int64_t axis = 0);
/// Joins tensors of equal shape along a new axis (jnp.stack).
Tensor stack(const std::vector<Tensor>& tensors, int64_t axis = 0);
/// `sections` equal parts along `axis` (which must divide evenly), as jnp.split. Views.
std::vector<Tensor> split(const Tensor& x, int64_t sections, int64_t axis = 0);
/// Parts [0, i0), [i0, i1), ..., [ik, n) for nondecreasing indices in [0, n], as jnp.split with
/// a list (a single index needs an explicit std::vector<int64_t>{i}). Views.
std::vector<Tensor> split(const Tensor& x, const std::vector<int64_t>& indices, int64_t axis = 0);

/// lax.slice: elements start[d], start[d] + strides[d], ... below limit[d] on every axis, with
/// 0 <= start <= limit <= dim and strides >= 1 (empty strides = all 1). Always a view.
Tensor slice(const Tensor& x, const Shape& start, const Shape& limit, const Shape& strides = {});
/// x[..., start:limit, ...] along one axis (lax.slice_in_dim; negative start/limit count from
/// the end). A view.
Tensor slice_axis(const Tensor& x, int64_t axis, int64_t start, int64_t limit);

/// jnp.pad with (before, after) per axis (nonnegative), constant `value`.
Tensor pad(const Tensor& x, const std::vector<std::pair<int64_t, int64_t>>& pads, double value = 0);
/// jnp.pad in `mode` (Constant uses `value`; Wrap and Reflect need non-empty padded axes). The
/// CUDA backward of Wrap and Reflect sums with atomicAdd: NotImplementedError in deterministic
/// mode (core/determinism.h).
Tensor pad(const Tensor& x, const std::vector<std::pair<int64_t, int64_t>>& pads, PadMode mode,
           double value = 0);

/// Out-of-range handling of take / take_along_axis:
///   Fill (jnp default): indices in [-n, 0) count from the end; others give NaN for floats (the
///         lowest signed / highest unsigned value for integers, true for bool) and get no
///         gradient.
///   Clip: indices are clamped into [0, n - 1] (negative ones to 0), as jnp mode='clip'.
///   Checked: as Fill, but any index outside [-n, n) throws IndexError naming it. Reads the
///         indices on the host, so it synchronises with the GPU.
enum class TakeMode : uint8_t { Fill, Clip, Checked };

/// Gathers along `axis` (jnp.take): output shape x.shape[:axis] + indices.shape +
/// x.shape[axis+1:]. Indices of any integer dtype and shape. The backward pass is a scatter-add
/// into zeros: deterministic on the CPU; on CUDA it uses atomicAdd, so float32 sums over repeated
/// indices may differ in the last bits between runs (bf16/f16 accumulate in float32), and it
/// throws NotImplementedError in deterministic mode (core/determinism.h).
Tensor take(const Tensor& x, const Tensor& indices, int64_t axis = 0, TakeMode mode = TakeMode::Fill);
/// jnp.take_along_axis: `indices` has x's rank; dimensions other than `axis` broadcast; output
/// dim `axis` is indices.shape[axis]. Same modes and backward as take.
Tensor take_along_axis(const Tensor& x, const Tensor& indices, int64_t axis,
                       TakeMode mode = TakeMode::Fill);
/// jax.nn.one_hot: shape indices.shape + [num_classes]; out-of-range (and negative) indices give
/// all-zero rows. Integer indices. Not differentiable.
Tensor one_hot(const Tensor& indices, int64_t num_classes, DType dtype = DType::F32);

/// Lower (tril) / upper (triu) triangle of the last two axes (rank >= 2), zeroing the rest; `k`
/// shifts the diagonal as jnp.tril / jnp.triu. Differentiable.
Tensor tril(const Tensor& x, int64_t k = 0);
Tensor triu(const Tensor& x, int64_t k = 0);
/// bool [n, n], true on and below the diagonal (nn.make_causal_mask without the batch and head
/// axes: position i may attend to j <= i).
Tensor causal_mask(int64_t n, Device device = Device::cpu());

}  // namespace loom
