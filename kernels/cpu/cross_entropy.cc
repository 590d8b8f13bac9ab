#include "kernels/cpu/cross_entropy.h"

#include <cmath>
#include <limits>
#include <type_traits>
#include <vector>

#include "core/error.h"
#include "kernels/cpu/row_exp.h"

namespace loom::cpu {
namespace {

constexpr const char* kOp = "softmax_cross_entropy_with_integer_labels";
// Work per parallel task is a full row; only parallelise when there is enough of it.
constexpr int64_t kParallelWork = 32768;

template <typename L>
inline int64_t label_at(const void* labels, int64_t r) {
  return int64_t(static_cast<const L*>(labels)[r]);
}

inline int64_t read_label(const void* labels, DType dtype, int64_t r) {
  switch (dtype) {
    case DType::I32: return label_at<int32_t>(labels, r);
    case DType::I64: return label_at<int64_t>(labels, r);
    case DType::U8: return label_at<uint8_t>(labels, r);
    case DType::U32: return label_at<uint32_t>(labels, r);
    default: LOOM_THROW(DTypeError, kOp, ": labels must be integers, got ", dtype_name(dtype));
  }
}

/// The label as a column index, or -1 when out of range (negative labels count from the end).
inline int64_t normalize_label(int64_t label, int64_t n) {
  if (label < 0) label += n;
  return label >= 0 && label < n ? label : -1;
}

// What a row computes in: float exponentials for float and half logits with a float loss
// (kernels/cpu/row_exp.h), double when the logits or the loss are double.
template <typename T, typename O>
using Compute = std::conditional_t<std::is_same_v<T, double> || std::is_same_v<O, double>, double,
                                   float>;

}  // namespace

void cross_entropy_int(const void* logits, DType dtype, const void* labels, DType label_dtype,
                       void* loss, DType loss_dtype, void* lse, int64_t rows, int64_t n,
                       int64_t ld) {
  visit_floating_in_out(dtype, loss_dtype, kOp, [&](auto tz, auto oz) {
    using T = decltype(tz);
    using O = decltype(oz);
    using C = Compute<T, O>;
    using A = std::conditional_t<std::is_same_v<T, double>, double, float>;
    const T* in = static_cast<const T*>(logits);
    O* out = static_cast<O*>(loss);
    A* plse = static_cast<A*>(lse);
#pragma omp parallel if (rows * n > kParallelWork && rows > 1)
    {
      std::vector<C> e(static_cast<size_t>(n));  // the row's exponentials
#pragma omp for schedule(static)
      for (int64_t r = 0; r < rows; ++r) {
        const T* row = in + r * ld;
        const C m = exponentials(n, [row](int64_t j) { return convert<C>(row[j]); }, e.data());
        // A +inf logit makes the log-sum-exp +inf, as jax.nn.logsumexp's (which optax's loss
        // takes) rather than the NaN of exp(inf - inf): the loss is then +inf, or NaN where the
        // label's logit is the +inf.
        const double l =
            m == std::numeric_limits<C>::infinity()
                ? double(m)
                : double(m) + std::log(sum_of(n, [&](int64_t j) { return double(e[j]); }));
        const int64_t label = normalize_label(read_label(labels, label_dtype, r), n);
        plse[r] = A(l);
        out[r] = convert<O>(label < 0 ? std::numeric_limits<double>::quiet_NaN()
                                      : l - convert<double>(convert<C>(row[label])));
      }
    }
  });
}

void cross_entropy_int_backward(const void* logits, DType dtype, const void* labels,
                                DType label_dtype, const void* lse, const void* grad,
                                DType grad_dtype, void* dx, int64_t rows, int64_t n,
                                int64_t ld) {
  visit_floating_in_out(dtype, grad_dtype, kOp, [&](auto tz, auto oz) {
    using T = decltype(tz);
    using O = decltype(oz);
    using C = Compute<T, O>;
    using A = std::conditional_t<std::is_same_v<T, double>, double, float>;
    const T* in = static_cast<const T*>(logits);
    const O* pg = static_cast<const O*>(grad);
    const A* plse = static_cast<const A*>(lse);
    T* o = static_cast<T*>(dx);
#pragma omp parallel for schedule(static) if (rows * n > kParallelWork && rows > 1)
    for (int64_t r = 0; r < rows; ++r) {
      const C g = convert<C>(pg[r]), l = C(plse[r]);
      const T* row = in + r * ld;
      T* orow = o + r * ld;
      for (int64_t j = n; j < ld; ++j) orow[j] = convert<T>(0.0);
      // A NaN lse (a NaN logit) or a row of -inf: a NaN row, as JAX's exp(x - lse) and
      // the GPU's give (exp_or_zero would give zeros for the NaN of x - lse). With any other lse,
      // x - lse is never NaN.
      if (!(l > -std::numeric_limits<C>::infinity())) {
        const T nan = convert<T>(std::numeric_limits<double>::quiet_NaN());
        for (int64_t j = 0; j < n; ++j) orow[j] = nan;
        continue;
      }
      // A +inf lse (a +inf logit): exp(x - lse) is 0, and NaN at the +inf logits, as in JAX.
      if (l == std::numeric_limits<C>::infinity()) {
        const int64_t label = normalize_label(read_label(labels, label_dtype, r), n);
        for (int64_t j = 0; j < n; ++j) {
          const C gp = g * std::exp(convert<C>(row[j]) - l);
          orow[j] = convert<T>(convert<O>(j == label ? gp - g : gp));
        }
        continue;
      }
      // g * softmax, a loop that vectorises; then the label's element, g p - g. (lse is kept in
      // float for float logits, so a p within float's rounding of 1 gives 0 there, as in JAX.)
      auto g_times_p = [&](int64_t j) { return g * exp_or_zero(convert<C>(row[j]) - l); };
      for (int64_t j = 0; j < n; ++j) orow[j] = convert<T>(convert<O>(g_times_p(j)));
      const int64_t label = normalize_label(read_label(labels, label_dtype, r), n);
      if (label >= 0) orow[label] = convert<T>(convert<O>(g_times_p(label) - g));
    }
  });
}

}  // namespace loom::cpu
