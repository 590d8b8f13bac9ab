#include "optim/loss_scale.h"

#include "core/ops/elementwise.h"
#include "core/ops/reduce.h"

namespace loom::optim {

DynamicLossScale DynamicLossScale::create(const DynamicLossScaleOptions& o, Device device) {
  LOOM_CHECK(o.initial_scale > 0 && o.min_scale > 0 && o.period >= 1 && o.factor > 1, ValueError,
             "dynamic_loss_scale: needs initial_scale > 0, min_scale > 0, period >= 1 and "
             "factor > 1; got initial_scale ", o.initial_scale, ", min_scale ", o.min_scale,
             ", period ", o.period, ", factor ", o.factor);
  return {.loss_scale = scalar(o.initial_scale, DType::F32, device),
          .counter = scalar(0, DType::I32, device),
          .period = o.period,
          .factor = o.factor,
          .min_scale = o.min_scale};
}

Tensor DynamicLossScale::scale(const Tensor& loss) const {
  return loss * loss_scale.to(loss.device()).to(loss.dtype());
}

Tree DynamicLossScale::unscale(const Tree& grads) const {
  // The scale is a power of the factor, so with factor 2 the reciprocal is exact.
  Tensor inv = 1.0 / loss_scale;
  return tree_map([&](const Tensor& g) { return (g * inv.to(g.device())).to(g.dtype()); }, grads);
}

DynamicLossScale DynamicLossScale::adjust(const Tensor& grads_finite) const {
  Tensor finite = grads_finite.to(counter.device());
  Tensor grown = where(equal(counter, scalar_like(double(period - 1), counter)),
                       loss_scale * factor, loss_scale);
  Tensor backed_off = maximum(loss_scale / factor, scalar_like(min_scale, loss_scale));
  Tensor next = safe_increment(counter);
  next = where(greater_equal(next, scalar_like(double(period), next)), zeros_like(next), next);
  DynamicLossScale out = *this;
  out.loss_scale = where(finite, grown, backed_off);
  out.counter = where(finite, next, zeros_like(next));
  return out;
}

Tensor all_finite(const Tree& tree) {
  // x * 0 is 0 for finite x and NaN for Inf / NaN, so one sum per leaf decides.
  Tensor total = zeros({}, DType::F32, tree_device(tree));
  for (const Tensor& leaf : tree.leaves())
    if (is_floating(leaf.dtype())) total = total + sum(leaf * 0.0).to(DType::F32).to(total.device());
  return equal(total, scalar_like(0, total));
}

Tree select_tree(const Tensor& pred, const Tree& a, const Tree& b, const char* op) {
  check_same_structure(b, a, op, "the kept tree", "the selected tree");
  return tree_map(
      [&](const Tensor& old, const Tensor& next) {
        return where(pred.to(old.device()), next.to(old.dtype()).to(old.device()), old);
      },
      b, a);
}

GradientTransformation dynamic_loss_scale(GradientTransformation inner, DynamicLossScaleOptions options) {
  LOOM_CHECK(inner.init && inner.update, ValueError, "dynamic_loss_scale: the inner transformation is empty");
  DynamicLossScale::create(options);  // rejects bad options when the optimizer is built
  GradientTransformation tx;
  tx.init = [inner, options](const Tree& params) {
    DynamicLossScale ls = DynamicLossScale::create(options, tree_device(params));
    Tree state;
    state.insert("loss_scale", ls.loss_scale);
    state.insert("counter", ls.counter);
    state.insert("last_finite", scalar(1, DType::Bool, tree_device(params)));
    state.insert("total_notfinite", zero_count(params));
    state.insert("inner_state", inner.init(params));
    return state;
  };
  tx.update = [inner, options](const Tree& updates, const Tree& state, const Tree& params) {
    const char* op = "dynamic_loss_scale";
    DynamicLossScale ls{.loss_scale = state_field(state, "loss_scale", op).tensor(),
                        .counter = state_field(state, "counter", op).tensor(),
                        .period = options.period,
                        .factor = options.factor,
                        .min_scale = options.min_scale};
    const Tensor& total = state_field(state, "total_notfinite", op).tensor();
    const Tree& inner0 = state_field(state, "inner_state", op);
    Tree grads = ls.unscale(updates);
    Tensor finite = all_finite(grads).to(total.device());
    // The inner update always runs; a select keeps its results only when finite (lax.cond).
    auto [inner_updates, new_inner] = inner.update(grads, inner0, params);
    Tree out = tree_map([&](const Tensor& u) { return where(finite.to(u.device()), u, zeros_like(u)); },
                        inner_updates);
    DynamicLossScale next_ls = ls.adjust(finite);
    Tree next;
    next.insert("loss_scale", next_ls.loss_scale);
    next.insert("counter", next_ls.counter);
    next.insert("last_finite", finite);
    next.insert("total_notfinite", where(finite, total, safe_increment(total)));
    next.insert("inner_state", select_tree(finite, new_inner, inner0, op));
    return std::pair{out, next};
  };
  return tx;
}

const Tensor& current_loss_scale(const Tree& opt_state) {
  return state_field(opt_state, "loss_scale", "current_loss_scale").tensor();
}

}  // namespace loom::optim
