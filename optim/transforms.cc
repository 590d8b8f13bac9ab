#include "optim/transforms.h"

#include "core/ops/elementwise.h"
#include "core/ops/reduce.h"
#include "optim/internal.h"
#include "optim/wrappers.h"

namespace loom::optim {

using internal::bias_correction;
using internal::cast_tree;
using internal::moment;
using internal::zeros_tree;

// --- scaling ---

GradientTransformation scale(double step_size) {
  return {[](const Tree&) { return Tree(); },
          [step_size](const Tree& updates, const Tree& state, const Tree&) {
            return std::pair{tree_map([&](const Tensor& u) { return u * step_size; }, updates), state};
          },
          {}};
}

GradientTransformation scale(const Tensor& step_size) {
  LOOM_CHECK(step_size.defined() && step_size.numel() == 1, ValueError,
             "scale: the step size must be a 0-d tensor");
  Tensor s = step_size.reshape({});
  return {[](const Tree&) { return Tree(); },
          [s](const Tree& updates, const Tree& state, const Tree&) {
            return std::pair{tree_map([&](const Tensor& u) { return s.to(u.device()) * u; }, updates),
                             state};
          },
          {}};
}

GradientTransformation scale_by_schedule(Schedule step_size_fn) {
  LOOM_CHECK(bool(step_size_fn), ValueError, "scale_by_schedule: empty schedule");
  return {[](const Tree& params) { return internal::count_state(params); },
          [f = std::move(step_size_fn)](const Tree& updates, const Tree& state, const Tree&) {
            const Tensor& count = state_field(state, "count", "scale_by_schedule").tensor();
            Tensor step = f(count);
            Tree out = tree_map([&](const Tensor& u) { return step.to(u.dtype()) * u; }, updates);
            Tree next;
            next.insert("count", safe_increment(count));
            return std::pair{out, next};
          },
          {}};
}

GradientTransformation scale_by_learning_rate(ScalarOrSchedule learning_rate, bool flip_sign) {
  if (learning_rate.is_constant()) return scale((flip_sign ? -1.0 : 1.0) * learning_rate.constant());
  if (learning_rate.is_tensor())
    return scale(flip_sign ? neg(learning_rate.tensor()) : learning_rate.tensor());
  Schedule s = learning_rate.schedule();
  return scale_by_schedule([s, flip_sign](const Tensor& count) {
    Tensor v = s(count);
    return flip_sign ? neg(v) : v;
  });
}

GradientTransformation scale_by_sign() {
  return {[](const Tree&) { return Tree(); },
          [](const Tree& updates, const Tree& state, const Tree&) {
            return std::pair{tree_map([](const Tensor& u) { return sign(u); }, updates), state};
          },
          {}};
}

// --- adaptive preconditioners ---

GradientTransformation scale_by_adam(const AdamOptions& o) {
  GradientTransformation tx;
  tx.init = [o](const Tree& params) {
    Tree state;
    state.insert("count", zero_count(params));
    state.insert("mu", zeros_tree(params, o.mu_dtype));
    state.insert("nu", zeros_tree(params));
    return state;
  };
  tx.update = [o](const Tree& updates, const Tree& state, const Tree&) {
    const char* op = "scale_by_adam";
    const Tensor& count = state_field(state, "count", op).tensor();
    const Tree& mu0 = state_field(state, "mu", op);
    const Tree& nu0 = state_field(state, "nu", op);
    check_same_structure(updates, mu0, op, "updates", "the state's mu");
    Tree mu = tree_map([&](const Tensor& g, const Tensor& m) { return moment(g, m, o.b1, 1); }, updates, mu0);
    Tree nu = tree_map([&](const Tensor& g, const Tensor& v) { return moment(g, v, o.b2, 2); }, updates, nu0);
    Tensor count_inc = safe_increment(count);
    Tensor bc1 = bias_correction(o.b1, count_inc), bc2 = bias_correction(o.b2, count_inc);
    Tree mu_hat;
    if (o.nesterov) {
      Tensor bc1_next = bias_correction(o.b1, safe_increment(count_inc));
      mu_hat = tree_map(
          [&](const Tensor& m, const Tensor& g) {
            return (m / bc1_next.to(m.dtype())) * o.b1 + (g / bc1.to(g.dtype())) * (1.0 - o.b1);
          },
          mu, updates);
    } else {
      mu_hat = tree_map([&](const Tensor& m) { return m / bc1.to(m.dtype()); }, mu);
    }
    Tree out = tree_map(
        [&](const Tensor& m, const Tensor& v) {
          return m / (sqrt(v / bc2.to(v.dtype()) + o.eps_root) + o.eps);
        },
        mu_hat, nu);
    Tree next;
    next.insert("count", count_inc);
    next.insert("mu", o.mu_dtype ? cast_tree(mu, *o.mu_dtype) : mu);
    next.insert("nu", tree_map([](const Tensor& v, const Tensor& old) { return v.to(old.dtype()); }, nu, nu0));
    return std::pair{out, next};
  };
  return tx;
}

namespace {

GradientTransformation rms_like(const RmsOptions& o, bool centered) {
  const char* op = centered ? "scale_by_stddev" : "scale_by_rms";
  GradientTransformation tx;
  tx.init = [o, centered](const Tree& params) {
    Tree state;
    if (o.bias_correction) state.insert("count", zero_count(params));
    if (centered) state.insert("mu", zeros_tree(params));
    state.insert("nu", tree_map([&](const Tensor& p) { return full_like(p, o.initial_scale); }, params));
    return state;
  };
  tx.update = [o, centered, op](const Tree& updates, const Tree& state, const Tree&) {
    const Tree& nu0 = state_field(state, "nu", op);
    check_same_structure(updates, nu0, op, "updates", "the state's nu");
    Tree nu = tree_map([&](const Tensor& g, const Tensor& v) { return moment(g, v, o.decay, 2); }, updates, nu0);
    Tree mu;
    if (centered)
      mu = tree_map([&](const Tensor& g, const Tensor& m) { return moment(g, m, o.decay, 1); },
                    updates, state_field(state, "mu", op));
    Tree nu_hat = nu, mu_hat = mu;
    Tensor count_inc;
    if (o.bias_correction) {
      count_inc = safe_increment(state_field(state, "count", op).tensor());
      Tensor bc = bias_correction(o.decay, count_inc);
      auto correct = [&](const Tensor& t) { return t / bc.to(t.dtype()); };
      nu_hat = tree_map(correct, nu);
      if (centered) mu_hat = tree_map(correct, mu);
    }
    auto scaling = [&](const Tensor& v) {
      return o.eps_in_sqrt ? rsqrt(v + o.eps) : 1.0 / (sqrt(v) + o.eps);
    };
    Tree out;
    if (centered) {
      Tree var = tree_map([](const Tensor& m, const Tensor& v) { return v - m * m; }, mu_hat, nu_hat);
      out = tree_map([&](const Tensor& v, const Tensor& g) { return scaling(v) * g; }, var, updates);
    } else {
      out = tree_map([&](const Tensor& v, const Tensor& g) { return scaling(v) * g; }, nu_hat, updates);
    }
    Tree next;
    if (o.bias_correction) next.insert("count", count_inc);
    if (centered) next.insert("mu", mu);
    next.insert("nu", nu);
    return std::pair{out, next};
  };
  return tx;
}

}  // namespace

GradientTransformation scale_by_rms(const RmsOptions& o) { return rms_like(o, false); }
GradientTransformation scale_by_stddev(const RmsOptions& o) { return rms_like(o, true); }

GradientTransformation scale_by_rss(double initial_accumulator_value, double eps) {
  GradientTransformation tx;
  tx.init = [initial_accumulator_value](const Tree& params) {
    Tree state;
    state.insert("sum_of_squares", tree_map([&](const Tensor& p) {
                   return full_like(p, initial_accumulator_value);
                 }, params));
    return state;
  };
  tx.update = [eps](const Tree& updates, const Tree& state, const Tree&) {
    const Tree& s0 = state_field(state, "sum_of_squares", "scale_by_rss");
    check_same_structure(updates, s0, "scale_by_rss", "updates", "the state's sum_of_squares");
    Tree sums = tree_map([](const Tensor& g, const Tensor& t) { return g * g + t; }, updates, s0);
    Tree out = tree_map(
        [&](const Tensor& t, const Tensor& g) {
          Tensor inv = where(greater(t, scalar_like(0, t)), rsqrt(t + eps), scalar_like(0, t));
          return inv * g;
        },
        sums, updates);
    Tree next;
    next.insert("sum_of_squares", sums);
    return std::pair{out, next};
  };
  return tx;
}

GradientTransformation scale_by_lion(double b1, double b2, std::optional<DType> mu_dtype) {
  GradientTransformation tx;
  tx.init = [mu_dtype](const Tree& params) {
    Tree state;
    state.insert("count", zero_count(params));
    state.insert("mu", zeros_tree(params, mu_dtype));
    return state;
  };
  tx.update = [b1, b2, mu_dtype](const Tree& updates, const Tree& state, const Tree&) {
    const Tree& mu0 = state_field(state, "mu", "scale_by_lion");
    check_same_structure(updates, mu0, "scale_by_lion", "updates", "the state's mu");
    Tree out = tree_map(
        [&](const Tensor& g, const Tensor& m) { return sign(g * (1.0 - b1) + m * b1); }, updates, mu0);
    Tree mu = tree_map([&](const Tensor& g, const Tensor& m) { return moment(g, m, b2, 1); }, updates, mu0);
    Tree next;
    next.insert("count", safe_increment(state_field(state, "count", "scale_by_lion").tensor()));
    next.insert("mu", mu_dtype ? cast_tree(mu, *mu_dtype) : mu);
    return std::pair{out, next};
  };
  return tx;
}

GradientTransformation scale_by_trust_ratio(double min_norm, double trust_coefficient, double eps) {
  return {[](const Tree&) { return Tree(); },
          [=](const Tree& updates, const Tree& state, const Tree& params) {
            require_params(updates, params, "scale_by_trust_ratio");
            check_same_structure(updates, params, "scale_by_trust_ratio", "updates", "params");
            Tree out = tree_map(
                [&](const Tensor& u, const Tensor& p) {
                  Tensor pn = internal::safe_norm(p, min_norm);
                  Tensor un = internal::safe_norm(u, min_norm);
                  Tensor ratio = pn * trust_coefficient / (un + eps);
                  Tensor zero = logical_or(equal(pn, scalar_like(0, pn)), equal(un, scalar_like(0, un)));
                  return u * where(zero, scalar_like(1, ratio).to(p.dtype()), ratio);
                },
                updates, params);
            return std::pair{out, state};
          },
          {}};
}

GradientTransformation scale_by_param_block_rms(double min_scale) {
  return {[](const Tree&) { return Tree(); },
          [=](const Tree& updates, const Tree& state, const Tree& params) {
            require_params(updates, params, "scale_by_param_block_rms");
            check_same_structure(updates, params, "scale_by_param_block_rms", "updates", "params");
            Tree out = tree_map(
                [&](const Tensor& u, const Tensor& p) {
                  Tensor rms = sqrt(mean(p * p));
                  return u * where(less_equal(rms, scalar_like(min_scale, rms)),
                                   scalar_like(min_scale, rms), rms);
                },
                updates, params);
            return std::pair{out, state};
          },
          {}};
}

GradientTransformation scale_by_param_block_norm(double min_scale) {
  return {[](const Tree&) { return Tree(); },
          [=](const Tree& updates, const Tree& state, const Tree& params) {
            require_params(updates, params, "scale_by_param_block_norm");
            check_same_structure(updates, params, "scale_by_param_block_norm", "updates", "params");
            Tree out = tree_map(
                [&](const Tensor& u, const Tensor& p) { return u * internal::safe_norm(p, min_scale); },
                updates, params);
            return std::pair{out, state};
          },
          {}};
}

// --- accumulation ---

GradientTransformation trace(double decay, bool nesterov, std::optional<DType> accumulator_dtype) {
  GradientTransformation tx;
  tx.init = [accumulator_dtype](const Tree& params) {
    Tree state;
    state.insert("trace", zeros_tree(params, accumulator_dtype));
    return state;
  };
  tx.update = [=](const Tree& updates, const Tree& state, const Tree&) {
    const Tree& t0 = state_field(state, "trace", "trace");
    check_same_structure(updates, t0, "trace", "updates", "the state's trace");
    Tree t = tree_map([&](const Tensor& g, const Tensor& old) { return g + old * decay; }, updates, t0);
    Tree out = nesterov ? tree_map([&](const Tensor& g, const Tensor& n) { return g + n * decay; }, updates, t)
                        : t;
    Tree next;
    next.insert("trace", accumulator_dtype ? cast_tree(t, *accumulator_dtype) : t);
    return std::pair{out, next};
  };
  return tx;
}

GradientTransformation ema(double decay, bool debias, std::optional<DType> accumulator_dtype) {
  GradientTransformation tx;
  tx.init = [accumulator_dtype](const Tree& params) {
    Tree state;
    state.insert("count", zero_count(params));
    state.insert("ema", zeros_tree(params, accumulator_dtype));
    return state;
  };
  tx.update = [=](const Tree& updates, const Tree& state, const Tree&) {
    const Tree& e0 = state_field(state, "ema", "ema");
    check_same_structure(updates, e0, "ema", "updates", "the state's ema");
    Tree e = tree_map([&](const Tensor& g, const Tensor& old) { return moment(g, old, decay, 1); }, updates, e0);
    Tensor count_inc = safe_increment(state_field(state, "count", "ema").tensor());
    Tree out = e;
    if (debias) {
      Tensor bc = bias_correction(decay, count_inc);
      out = tree_map([&](const Tensor& t) { return t / bc.to(t.dtype()); }, e);
    }
    Tree next;
    next.insert("count", count_inc);
    next.insert("ema", accumulator_dtype ? cast_tree(e, *accumulator_dtype) : e);
    return std::pair{out, next};
  };
  return tx;
}

// --- adding ---

GradientTransformation add_decayed_weights(ScalarOrSchedule weight_decay, std::optional<Mask> mask) {
  GradientTransformation tx;
  bool scheduled = weight_decay.is_schedule();
  tx.init = [scheduled](const Tree& params) {
    return scheduled ? internal::count_state(params) : Tree();
  };
  tx.update = [weight_decay, scheduled](const Tree& updates, const Tree& state, const Tree& params) {
    require_params(updates, params, "add_decayed_weights");
    Tree next = state;
    Tensor s;
    if (scheduled) {
      const Tensor& count = state_field(state, "count", "add_decayed_weights").tensor();
      next = Tree();
      next.insert("count", safe_increment(count));
      s = weight_decay.schedule()(count);
    }
    if (weight_decay.is_constant() && weight_decay.constant() == 0.0) return std::pair{updates, next};
    check_same_structure(updates, params, "add_decayed_weights", "updates", "params");
    Tree out = tree_map(
        [&](const Tensor& g, const Tensor& p) {
          if (weight_decay.is_constant()) return g + p * weight_decay.constant();
          const Tensor& w = scheduled ? s : weight_decay.tensor();
          return g + w.to(p.device()) * p;
        },
        updates, params);
    return std::pair{out, next};
  };
  if (mask) return masked(tx, *mask);
  return tx;
}

// --- clipping ---

GradientTransformation clip(double max_delta) {
  LOOM_CHECK(max_delta >= 0, ValueError, "clip: max_delta must be >= 0, got ", max_delta);
  return {[](const Tree&) { return Tree(); },
          [max_delta](const Tree& updates, const Tree& state, const Tree&) {
            return std::pair{
                tree_map([&](const Tensor& u) { return loom::clip(u, -max_delta, max_delta); }, updates),
                state};
          },
          {}};
}

GradientTransformation clip_by_global_norm(double max_norm) {
  return {[](const Tree&) { return Tree(); },
          [max_norm](const Tree& updates, const Tree& state, const Tree&) {
            if (updates.leaf_count() == 0) return std::pair{updates, state};
            Tensor norm = global_norm(updates);
            Tensor keep = less(norm, scalar_like(max_norm, norm));  // strict <, as Optax
            Tree out = tree_map(
                [&](const Tensor& u) { return where(keep, u, u / norm.to(u.dtype()) * max_norm); },
                updates);
            return std::pair{out, state};
          },
          {}};
}

GradientTransformation clip_by_block_rms(double threshold) {
  return {[](const Tree&) { return Tree(); },
          [threshold](const Tree& updates, const Tree& state, const Tree&) {
            Tree out = tree_map(
                [&](const Tensor& u) {
                  Tensor denom = maximum(scalar_like(1, u), sqrt(mean(u * u)) / threshold);
                  return u / denom;
                },
                updates);
            return std::pair{out, state};
          },
          {}};
}

}  // namespace loom::optim
