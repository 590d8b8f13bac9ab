#include "optim/schedules.h"

#include <cmath>

#include "core/ops/elementwise.h"

namespace loom::optim {
namespace {

constexpr double kPi = 3.141592653589793;

Tensor f32(double v, const Tensor& like) { return scalar(v, DType::F32, like.device()); }

// lax.integer_pow's multiplication order (JAX uses it for `x ** n` with a Python int n).
Tensor integer_pow(Tensor x, int64_t n) {
  if (n == 0) return ones_like(x);
  bool reciprocal = n < 0;
  if (reciprocal) n = -n;
  Tensor acc;
  while (n > 0) {
    if (n & 1) acc = acc.defined() ? acc * x : x;
    n >>= 1;
    if (n > 0) x = x * x;
  }
  return reciprocal ? 1.0 / acc : acc;
}

void check_scales(const std::map<int64_t, double>& boundaries_and_scales, const char* op) {
  for (const auto& [boundary, s] : boundaries_and_scales)
    LOOM_CHECK(s >= 0.0, ValueError, op, ": expects non-negative scale factors, got ", s,
               " at boundary ", boundary);
}

}  // namespace

Schedule constant_schedule(double value) {
  return [value](const Tensor& count) { return f32(value, count); };
}

Schedule polynomial_schedule(double init_value, double end_value, double power,
                             int64_t transition_steps, int64_t transition_begin) {
  if (transition_steps <= 0) return constant_schedule(init_value);
  transition_begin = std::max<int64_t>(transition_begin, 0);
  bool integral = power == std::floor(power) && std::abs(power) < 64;
  return [=](const Tensor& count) {
    Tensor c = clip(count - double(transition_begin), 0.0, double(transition_steps));
    Tensor frac = 1.0 - c / double(transition_steps);  // int32 / int32: float32 true division
    Tensor p = integral ? integer_pow(frac, int64_t(power)) : pow(frac, power);
    return p * (init_value - end_value) + end_value;
  };
}

Schedule linear_schedule(double init_value, double end_value, int64_t transition_steps,
                         int64_t transition_begin) {
  return polynomial_schedule(init_value, end_value, 1, transition_steps, transition_begin);
}

Schedule piecewise_constant_schedule(double init_value,
                                     const std::map<int64_t, double>& boundaries_and_scales) {
  check_scales(boundaries_and_scales, "piecewise_constant_schedule");
  return [=](const Tensor& count) {
    Tensor v = f32(init_value, count);
    for (const auto& [threshold, s] : boundaries_and_scales) {
      // max(0, sign(threshold - count)): 1 before the boundary, 0 from it on.
      Tensor indicator = maximum(sign((double(threshold) - count).to(DType::F32)), f32(0, count));
      v = v * indicator + (1.0 - indicator) * s * v;
    }
    return v;
  };
}

Schedule exponential_decay(double init_value, int64_t transition_steps, double decay_rate,
                           int64_t transition_begin, bool staircase,
                           std::optional<double> end_value) {
  if (transition_steps <= 0 || decay_rate == 0) return constant_schedule(init_value);
  transition_begin = std::max<int64_t>(transition_begin, 0);
  return [=](const Tensor& count) {
    Tensor decreased = count - double(transition_begin);
    Tensor p = decreased / double(transition_steps);
    // floor by truncation: p only matters where it is positive
    if (staircase) p = p.to(DType::I32).to(DType::F32);
    Tensor decayed = where(less_equal(decreased, scalar_like(0, decreased)), f32(init_value, count),
                           pow(f32(decay_rate, count), p) * init_value);
    if (end_value) {
      Tensor e = f32(*end_value, count);
      decayed = decay_rate < 1.0 ? maximum(decayed, e) : minimum(decayed, e);
    }
    return decayed;
  };
}

Schedule cosine_decay_schedule(double init_value, int64_t decay_steps, double alpha,
                               double exponent) {
  LOOM_CHECK(decay_steps > 0, ValueError,
             "cosine_decay_schedule: requires positive decay_steps, got ", decay_steps);
  return [=](const Tensor& count) {
    Tensor c = minimum(count.to(DType::F32), f32(double(decay_steps), count));
    Tensor cos_decay = (loom::cos(c * kPi / double(decay_steps)) + 1.0) * 0.5;
    Tensor decayed = pow(cos_decay, exponent) * (1.0 - alpha) + alpha;
    return decayed * init_value;
  };
}

Schedule warmup_cosine_decay_schedule(double init_value, double peak_value, int64_t warmup_steps,
                                      int64_t decay_steps, double end_value, double exponent) {
  double alpha = peak_value == 0.0 ? 0.0 : end_value / peak_value;
  return join_schedules({linear_schedule(init_value, peak_value, warmup_steps),
                         cosine_decay_schedule(peak_value, decay_steps - warmup_steps, alpha,
                                               exponent)},
                        {warmup_steps});
}

Schedule warmup_exponential_decay_schedule(double init_value, double peak_value,
                                           int64_t warmup_steps, int64_t transition_steps,
                                           double decay_rate, int64_t transition_begin,
                                           bool staircase, std::optional<double> end_value) {
  return join_schedules({linear_schedule(init_value, peak_value, warmup_steps),
                         exponential_decay(peak_value, transition_steps, decay_rate,
                                           transition_begin, staircase, end_value)},
                        {warmup_steps});
}

Schedule join_schedules(const std::vector<Schedule>& schedules,
                        const std::vector<int64_t>& boundaries) {
  LOOM_CHECK(!schedules.empty() && boundaries.size() + 1 == schedules.size(), ValueError,
             "join_schedules: needs one boundary fewer than schedules, got ", schedules.size(),
             " schedules and ", boundaries.size(), " boundaries");
  for (size_t i = 0; i < schedules.size(); ++i)
    LOOM_CHECK(bool(schedules[i]), ValueError, "join_schedules: schedule ", i, " is empty");
  return [=](const Tensor& step) {
    Tensor out = schedules[0](step);
    for (size_t i = 0; i < boundaries.size(); ++i) {
      double b = double(boundaries[i]);
      out = where(less(step, scalar_like(b, step)), out, schedules[i + 1](step - b));
    }
    return out;
  };
}

Schedule piecewise_cosine_interpolate_schedule(
    double init_value, const std::map<int64_t, double>& boundaries_and_scales) {
  check_scales(boundaries_and_scales, "piecewise_interpolate_schedule");
  std::vector<int64_t> bounds{0};
  std::vector<float> values{float(init_value)};  // jnp.cumprod in float32
  for (const auto& [b, s] : boundaries_and_scales) {
    bounds.push_back(b);
    values.push_back(values.back() * float(s));
  }
  return [=](const Tensor& count) {
    Tensor out = f32(0, count);
    for (size_t i = bounds.size() - 1; i-- > 0;) {
      double lo = double(bounds[i]), hi = double(bounds[i + 1]);
      double size = double(std::max<int64_t>(bounds[i + 1] - bounds[i], 1));
      Tensor inside = logical_and(less_equal(scalar_like(lo, count), count),
                                  less(count, scalar_like(hi, count)));
      Tensor pct = (count - lo) / size;
      float half = (values[i] - values[i + 1]) / 2.0f;  // (start - end) / 2.0 in float32
      Tensor interp = (loom::cos(pct * kPi) + 1.0) * double(half) + double(values[i + 1]);
      out = where(inside, interp, out);
    }
    Tensor after = less_equal(scalar_like(double(bounds.back()), count), count);
    return out + where(after, f32(values.back(), count), f32(0, count));
  };
}

Schedule cosine_onecycle_schedule(int64_t transition_steps, double peak_value, double pct_start,
                                  double div_factor, double final_div_factor) {
  LOOM_CHECK(transition_steps > 0, ValueError,
             "cosine_onecycle_schedule: transition_steps must be positive, got ",
             transition_steps);
  std::map<int64_t, double> boundaries;
  boundaries[int64_t(pct_start * double(transition_steps))] = div_factor;
  boundaries[transition_steps] = 1.0 / (div_factor * final_div_factor);
  return piecewise_cosine_interpolate_schedule(peak_value / div_factor, boundaries);
}

}  // namespace loom::optim
