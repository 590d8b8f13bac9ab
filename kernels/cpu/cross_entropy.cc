#include "kernels/cpu/cross_entropy.h"

#include <cmath>
#include <limits>

#include "core/error.h"

namespace loom::cpu {
namespace {

constexpr const char* kOp = "softmax_cross_entropy_with_integer_labels";
// Work per parallel task is a full row; only parallelise when there is enough of it.
constexpr int64_t kParallelWork = 32768;

// max that propagates NaN, as jnp.max
inline double nan_max(double a, double b) { return (a != a || b != b) ? (a != a ? a : b) : (a > b ? a : b); }

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

}  // namespace

void cross_entropy_int(const void* logits, DType dtype, const void* labels, DType label_dtype,
                       void* loss, DType loss_dtype, void* lse, int64_t rows, int64_t n,
                       int64_t ld) {
  visit_floating_in_out(dtype, loss_dtype, kOp, [&](auto tz, auto oz) {
    using T = decltype(tz);
    using O = decltype(oz);
    using A = std::conditional_t<std::is_same_v<T, double>, double, float>;
    const T* in = static_cast<const T*>(logits);
    O* out = static_cast<O*>(loss);
    A* plse = static_cast<A*>(lse);
#pragma omp parallel for schedule(static) if (rows * n > kParallelWork && rows > 1)
    for (int64_t r = 0; r < rows; ++r) {
      const T* row = in + r * ld;
      double m = -std::numeric_limits<double>::infinity();
      for (int64_t j = 0; j < n; ++j) m = nan_max(m, convert<double>(row[j]));
      double s = 0;
      for (int64_t j = 0; j < n; ++j) s += std::exp(convert<double>(row[j]) - m);
      double l = m + std::log(s);
      int64_t label = normalize_label(read_label(labels, label_dtype, r), n);
      plse[r] = A(l);
      out[r] = convert<O>(label < 0 ? std::numeric_limits<double>::quiet_NaN()
                                    : l - convert<double>(row[label]));
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
    using A = std::conditional_t<std::is_same_v<T, double>, double, float>;
    const T* in = static_cast<const T*>(logits);
    const O* pg = static_cast<const O*>(grad);
    const A* plse = static_cast<const A*>(lse);
    T* o = static_cast<T*>(dx);
#pragma omp parallel for schedule(static) if (rows * n > kParallelWork && rows > 1)
    for (int64_t r = 0; r < rows; ++r) {
      double g = convert<double>(pg[r]), l = double(plse[r]);
      int64_t label = normalize_label(read_label(labels, label_dtype, r), n);
      for (int64_t j = 0; j < n; ++j) {
        double p = std::exp(convert<double>(in[r * ld + j]) - l);
        o[r * ld + j] = convert<T>(convert<O>(g * p - (j == label ? g : 0.0)));
      }
      for (int64_t j = n; j < ld; ++j) o[r * ld + j] = convert<T>(0.0);
    }
  });
}

}  // namespace loom::cpu
