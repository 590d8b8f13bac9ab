// value_and_grad / grad over a Tree (Flax's params) or a single Tensor, as jax.value_and_grad.
//
// Example:
//   auto loss_fn = [&](const Tree& params) { return mean(square(model.apply(params, x) - y)); };
//   auto [loss, grads] = loom::value_and_grad(loss_fn)(state.params);   // grads shaped like params
//   // with an auxiliary output (has_aux):
//   auto [loss, logits, grads] = loom::value_and_grad_aux(
//       [&](const Tree& p) { Tensor l = ...; return std::pair{loss, l}; })(params);
#pragma once
#include <tuple>
#include <utility>

#include "core/autodiff.h"
#include "core/tree.h"

namespace loom {

namespace detail {
/// Leaves of `params` replaced by fresh autodiff leaves (numbered in flatten order).
inline std::pair<Tree, std::vector<Tensor>> make_leaves(const Tree& params) {
  std::vector<Tensor> values = params.leaves(), leaves;
  leaves.reserve(values.size());
  for (size_t i = 0; i < values.size(); ++i) {
    LOOM_CHECK(is_floating(values[i].dtype()), DTypeError,
               "value_and_grad: parameter ", params.flatten()[i].first, " has dtype ",
               dtype_name(values[i].dtype()), "; only floating leaves can be differentiated");
    leaves.push_back(autograd::make_leaf(values[i], int64_t(i)));
  }
  return {params.unflatten(leaves), leaves};
}
}  // namespace detail

/// f: (const Tree&) -> Tensor (a scalar). Returns a callable giving {value, grads}.
/// `on_ready(leaf, grad)`, when given, sees each gradient as soon as the backward pass has
/// finished it (leaf = flatten index), while the rest of the pass still runs: data parallelism
/// starts all-reducing there (dist::value_and_grad_pmean).
template <typename F>
auto value_and_grad(F f, autograd::LeafReadyFn on_ready = {}) {
  return [f, on_ready](const Tree& params) -> std::pair<Tensor, Tree> {
    auto [traced, leaves] = detail::make_leaves(params);
    autograd::RecordingGuard recording(true);
    Tensor value = f(traced);
    std::vector<Tensor> grads = autograd::backward(value, leaves, on_ready);
    return {value.detach(), params.unflatten(grads)};
  };
}

/// f: (const Tree&) -> std::pair<Tensor, Aux>; only the first output is differentiated and the
/// auxiliary value comes back unchanged (detach it yourself if it holds tensors you keep).
/// `on_ready` as for value_and_grad.
template <typename F>
auto value_and_grad_aux(F f, autograd::LeafReadyFn on_ready = {}) {
  return [f, on_ready](const Tree& params) {
    auto [traced, leaves] = detail::make_leaves(params);
    autograd::RecordingGuard recording(true);
    auto [value, aux] = f(traced);
    std::vector<Tensor> grads = autograd::backward(value, leaves, on_ready);
    return std::tuple{value.detach(), std::move(aux), params.unflatten(grads)};
  };
}

template <typename F>
auto grad(F f) {
  return [f](const Tree& params) { return value_and_grad(f)(params).second; };
}

/// Gradient of a scalar function of one tensor.
template <typename F>
auto value_and_grad_tensor(F f) {
  return [f](const Tensor& x) -> std::pair<Tensor, Tensor> {
    Tensor leaf = autograd::make_leaf(x, 0);
    autograd::RecordingGuard recording(true);
    Tensor value = f(leaf);
    return {value.detach(), autograd::backward(value, {leaf})[0]};
  };
}

/// jax.lax.stop_gradient.
inline Tensor stop_gradient(const Tensor& x) { return x.detach(); }

}  // namespace loom
