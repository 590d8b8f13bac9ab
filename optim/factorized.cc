// scale_by_factored_rms (Adafactor's second moment), after optax/_src/factorized.py.
#include <algorithm>
#include <numeric>

#include "core/ops/elementwise.h"
#include "core/ops/reduce.h"
#include "core/ops/shape.h"
#include "optim/transforms.h"

namespace loom::optim {
namespace {

struct FactoredDims {
  int64_t d1 = -1, d0 = -1;  // second largest, largest dimension
  bool factored() const { return d0 >= 0; }
};

// The two largest dimensions (a stable argsort, as numpy's for these small ranks) when the
// smaller of them is at least min_dim_size_to_factor.
FactoredDims factored_dims(const Shape& shape, const FactoredRmsOptions& o) {
  if (!o.factored || shape.size() < 2) return {};
  std::vector<int64_t> order(shape.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](int64_t a, int64_t b) { return shape[size_t(a)] < shape[size_t(b)]; });
  int64_t second = order[order.size() - 2], largest = order.back();
  if (shape[size_t(second)] < o.min_dim_size_to_factor) return {};
  return {second, largest};
}

Shape without_axis(const Shape& s, int64_t axis) {
  Shape out;
  for (size_t d = 0; d < s.size(); ++d)
    if (int64_t(d) != axis) out.push_back(s[d]);
  return out;
}

}  // namespace

GradientTransformation scale_by_factored_rms(const FactoredRmsOptions& o) {
  GradientTransformation tx;
  tx.init = [o](const Tree& params) {
    std::vector<Tensor> rows, cols, full;
    for (const Tensor& p : params.leaves()) {
      FactoredDims f = factored_dims(p.shape(), o);
      Tensor one = zeros({1}, p.dtype(), p.device());
      rows.push_back(f.factored() ? zeros(without_axis(p.shape(), f.d0), p.dtype(), p.device()) : one);
      cols.push_back(f.factored() ? zeros(without_axis(p.shape(), f.d1), p.dtype(), p.device()) : one);
      full.push_back(f.factored() ? one : zeros_like(p));
    }
    Tree state;
    state.insert("count", zero_count(params));
    state.insert("v_row", params.unflatten(rows));
    state.insert("v_col", params.unflatten(cols));
    state.insert("v", params.unflatten(full));
    return state;
  };
  tx.update = [o](const Tree& grads, const Tree& state, const Tree& params) {
    const char* op = "scale_by_factored_rms";
    require_params(grads, params, op);
    check_same_structure(grads, params, op, "updates", "params");
    const Tensor& count = state_field(state, "count", op).tensor();
    const Tree& v_row = state_field(state, "v_row", op);
    const Tree& v_col = state_field(state, "v_col", op);
    const Tree& v_full = state_field(state, "v", op);
    check_same_structure(grads, v_row, op, "updates", "the state's v_row", /*shapes=*/false);
    // beta2_t = 1 - (t + 1)^-decay_rate with t = count - step_offset, in float32.
    Tensor t = (count - double(o.step_offset) + 1.0).to(DType::F32);
    Tensor decay_t = 1.0 - pow(t, -o.decay_rate);

    // Leaves are paired by path: the trees may list their keys in different orders.
    std::vector<Tensor> updates, rows, cols, full;
    for (const auto& [path, g] : grads.flatten()) {
      const Tensor& p = params.at(path).tensor();
      FactoredDims f = factored_dims(p.shape(), o);
      Tensor one_minus = 1.0 - decay_t;
      Tensor grad_sqr = g * g + o.epsilon;
      Tensor one = zeros({1}, p.dtype(), p.device());
      if (f.factored()) {
        Tensor new_row = (decay_t * v_row.at(path).tensor() + one_minus * mean(grad_sqr, {f.d0})).to(p.dtype());
        Tensor new_col = (decay_t * v_col.at(path).tensor() + one_minus * mean(grad_sqr, {f.d1})).to(p.dtype());
        int64_t reduced_d1 = f.d1 > f.d0 ? f.d1 - 1 : f.d1;
        Tensor row_col_mean = mean(new_row, {reduced_d1}, /*keepdims=*/true);
        Tensor row_factor = pow(new_row / row_col_mean, -0.5);
        Tensor col_factor = pow(new_col, -0.5);
        updates.push_back(g * expand_dims(row_factor, f.d0) * expand_dims(col_factor, f.d1));
        rows.push_back(new_row);
        cols.push_back(new_col);
        full.push_back(one);
      } else {
        Tensor new_v = (decay_t * v_full.at(path).tensor() + one_minus * grad_sqr).to(p.dtype());
        updates.push_back(g * pow(new_v, -0.5));
        rows.push_back(one);
        cols.push_back(one);
        full.push_back(new_v);
      }
    }
    Tree next;
    next.insert("count", safe_increment(count));
    next.insert("v_row", grads.unflatten(rows));
    next.insert("v_col", grads.unflatten(cols));
    next.insert("v", grads.unflatten(full));
    return std::pair{grads.unflatten(updates), next};
  };
  return tx;
}

}  // namespace loom::optim
