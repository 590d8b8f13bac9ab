// Building blocks shared by the optim/ implementation files (not part of the public API): Optax's
// tree_utils arithmetic (update_moment, bias_correction, safe_norm) in the same float32 operation
// order, so every transformation rounds where Optax rounds.
#pragma once
#include <optional>

#include "core/ops/elementwise.h"
#include "core/ops/reduce.h"
#include "optim/transform.h"

namespace loom::optim::internal {

/// (1 - decay) * g^order + decay * t (optax.tree.update_moment / _per_elem_norm for real values;
/// g^2 is g * g as lax.integer_pow).
inline Tensor moment(const Tensor& g, const Tensor& t, double decay, int order) {
  Tensor gp = order == 1 ? g : g * g;
  return gp * (1.0 - decay) + t * decay;
}

/// 1 - decay^count as a float32 0-d tensor on count's device (the pow in float32, as JAX's
/// `decay ** count` with an int32 count).
inline Tensor bias_correction(double decay, const Tensor& count) {
  return 1.0 - pow(scalar(decay, DType::F32, count.device()), count.to(DType::F32));
}

/// Zeros shaped like every leaf (optionally of another dtype).
inline Tree zeros_tree(const Tree& params, std::optional<DType> dtype = std::nullopt) {
  return tree_map([&](const Tensor& p) { return zeros(p.shape(), dtype.value_or(p.dtype()), p.device()); },
                  params);
}

inline Tree cast_tree(const Tree& t, DType dtype) {
  return tree_map([&](const Tensor& x) { return x.to(dtype); }, t);
}

/// {"count": 0} on the params' device (ScaleByScheduleState and friends).
inline Tree count_state(const Tree& params) {
  Tree state;
  state.insert("count", zero_count(params));
  return state;
}

/// optax.safe_norm: the L2 norm of x, or min_norm where the norm is <= min_norm.
inline Tensor safe_norm(const Tensor& x, double min_norm) {
  Tensor norm = sqrt(sum(x * x));
  return where(less_equal(norm, scalar_like(min_norm, norm)), scalar_like(min_norm, norm), norm);
}

}  // namespace loom::optim::internal
