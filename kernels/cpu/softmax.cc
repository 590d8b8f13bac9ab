#include "kernels/cpu/softmax.h"

#include <cmath>
#include <limits>

#include "core/error.h"

namespace loom::cpu {
namespace {

// Work per parallel task is a full softmax row; only parallelise when there is enough of it.
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
    default: LOOM_THROW(DTypeError, "softmax_cross_entropy_with_integer_labels: labels must be integers, got ", dtype_name(dtype));
  }
}

/// The label as a column index, or -1 when out of range (negative labels count from the end).
inline int64_t normalize_label(int64_t label, int64_t n) {
  if (label < 0) label += n;
  return label >= 0 && label < n ? label : -1;
}

}  // namespace

void softmax(const void* x, void* out, int64_t outer, int64_t n, int64_t inner, DType dtype,
             bool log) {
  visit_floating(dtype, log ? "log_softmax" : "softmax", [&](auto z) {
    using T = decltype(z);
    const T* in = static_cast<const T*>(x);
    T* o = static_cast<T*>(out);
    const int64_t columns = outer * inner;
#pragma omp parallel for schedule(static) if (columns * n > kParallelWork && columns > 1)
    for (int64_t c = 0; c < columns; ++c) {
      const int64_t base = (c / inner) * n * inner + c % inner;
      const T* row = in + base;
      T* orow = o + base;
      double m = -std::numeric_limits<double>::infinity();
      for (int64_t j = 0; j < n; ++j) m = nan_max(m, convert<double>(row[j * inner]));
      double s = 0;
      for (int64_t j = 0; j < n; ++j) s += std::exp(convert<double>(row[j * inner]) - m);
      if (log) {
        double lse = std::log(s);
        for (int64_t j = 0; j < n; ++j) orow[j * inner] = convert<T>(convert<double>(row[j * inner]) - m - lse);
      } else {
        for (int64_t j = 0; j < n; ++j) orow[j * inner] = convert<T>(std::exp(convert<double>(row[j * inner]) - m) / s);
      }
    }
  });
}

void softmax_backward(const void* y, const void* grad, void* dx, int64_t outer, int64_t n,
                      int64_t inner, DType dtype, bool log) {
  visit_floating(dtype, log ? "log_softmax" : "softmax", [&](auto z) {
    using T = decltype(z);
    const T* py = static_cast<const T*>(y);
    const T* pg = static_cast<const T*>(grad);
    T* o = static_cast<T*>(dx);
    const int64_t columns = outer * inner;
#pragma omp parallel for schedule(static) if (columns * n > kParallelWork && columns > 1)
    for (int64_t c = 0; c < columns; ++c) {
      const int64_t base = (c / inner) * n * inner + c % inner;
      double s = 0;
      for (int64_t j = 0; j < n; ++j) {
        int64_t k = base + j * inner;
        s += log ? convert<double>(pg[k]) : convert<double>(pg[k]) * convert<double>(py[k]);
      }
      for (int64_t j = 0; j < n; ++j) {
        int64_t k = base + j * inner;
        double g = convert<double>(pg[k]), v = convert<double>(py[k]);
        o[k] = convert<T>(log ? g - std::exp(v) * s : v * (g - s));
      }
    }
  });
}

void cross_entropy_int(const void* logits, DType dtype, const void* labels, DType label_dtype,
                       void* loss, void* lse, int64_t rows, int64_t n) {
  visit_floating(dtype, "softmax_cross_entropy_with_integer_labels", [&](auto z) {
    using T = decltype(z);
    using A = std::conditional_t<std::is_same_v<T, double>, double, float>;
    const T* in = static_cast<const T*>(logits);
    T* out = static_cast<T*>(loss);
    A* plse = static_cast<A*>(lse);
#pragma omp parallel for schedule(static) if (rows * n > kParallelWork && rows > 1)
    for (int64_t r = 0; r < rows; ++r) {
      const T* row = in + r * n;
      double m = -std::numeric_limits<double>::infinity();
      for (int64_t j = 0; j < n; ++j) m = nan_max(m, convert<double>(row[j]));
      double s = 0;
      for (int64_t j = 0; j < n; ++j) s += std::exp(convert<double>(row[j]) - m);
      double l = m + std::log(s);
      int64_t label = normalize_label(read_label(labels, label_dtype, r), n);
      plse[r] = A(l);
      out[r] = convert<T>(label < 0 ? std::numeric_limits<double>::quiet_NaN()
                                    : l - convert<double>(row[label]));
    }
  });
}

void cross_entropy_int_backward(const void* logits, DType dtype, const void* labels,
                                DType label_dtype, const void* lse, const void* grad, void* dx,
                                int64_t rows, int64_t n) {
  visit_floating(dtype, "softmax_cross_entropy_with_integer_labels", [&](auto z) {
    using T = decltype(z);
    using A = std::conditional_t<std::is_same_v<T, double>, double, float>;
    const T* in = static_cast<const T*>(logits);
    const T* pg = static_cast<const T*>(grad);
    const A* plse = static_cast<const A*>(lse);
    T* o = static_cast<T*>(dx);
#pragma omp parallel for schedule(static) if (rows * n > kParallelWork && rows > 1)
    for (int64_t r = 0; r < rows; ++r) {
      double g = convert<double>(pg[r]), l = double(plse[r]);
      int64_t label = normalize_label(read_label(labels, label_dtype, r), n);
      for (int64_t j = 0; j < n; ++j) {
        double p = std::exp(convert<double>(in[r * n + j]) - l);
        o[r * n + j] = convert<T>(g * p - (j == label ? g : 0.0));
      }
    }
  });
}

}  // namespace loom::cpu
