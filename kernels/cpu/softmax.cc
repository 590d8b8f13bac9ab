#include "kernels/cpu/softmax.h"

#include <cmath>
#include <limits>
#include <vector>

#include "core/error.h"

namespace loom::cpu {
namespace {

// Work per parallel task is a full softmax row; only parallelise when there is enough of it.
constexpr int64_t kParallelWork = 32768;

// max that propagates NaN, as jnp.max
inline double nan_max(double a, double b) { return (a != a || b != b) ? (a != a ? a : b) : (a > b ? a : b); }

// Where row r's mask elements start.
int64_t mask_row_offset(const MaskRows& mask, int64_t r) {
  int64_t off = 0;
  for (size_t d = mask.row_shape.size(); d-- > 0;) {
    off += (r % mask.row_shape[d]) * mask.row_strides[d];
    r /= mask.row_shape[d];
  }
  return off;
}

}  // namespace

void softmax(const void* x, void* out, int64_t outer, int64_t n, int64_t inner, DType dtype,
             bool log) {
  visit_floating(dtype, log ? "log_softmax" : "softmax", [&](auto z) {
    using T = decltype(z);
    const T* in = static_cast<const T*>(x);
    T* o = static_cast<T*>(out);
    const int64_t columns = outer * inner;
#pragma omp parallel if (columns * n > kParallelWork && columns > 1)
    {
      // Each row's exponentials, taken once: the sum and the quotients read them back.
      std::vector<double> e(size_t(log ? 0 : n));
#pragma omp for schedule(static)
      for (int64_t c = 0; c < columns; ++c) {
        const int64_t base = (c / inner) * n * inner + c % inner;
        const T* row = in + base;
        T* orow = o + base;
        double m = -std::numeric_limits<double>::infinity();
        for (int64_t j = 0; j < n; ++j) m = nan_max(m, convert<double>(row[j * inner]));
        double s = 0;
        if (log) {
          for (int64_t j = 0; j < n; ++j) s += std::exp(convert<double>(row[j * inner]) - m);
          double lse = std::log(s);
          for (int64_t j = 0; j < n; ++j) orow[j * inner] = convert<T>(convert<double>(row[j * inner]) - m - lse);
        } else {
          for (int64_t j = 0; j < n; ++j) s += e[size_t(j)] = std::exp(convert<double>(row[j * inner]) - m);
          for (int64_t j = 0; j < n; ++j) orow[j * inner] = convert<T>(e[size_t(j)] / s);
        }
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

void masked_softmax(const void* x, const MaskRows& mask, double fill, void* out, int64_t rows,
                    int64_t n, DType dtype) {
  visit_floating(dtype, "masked_softmax", [&](auto z) {
    using T = decltype(z);
    const T* in = static_cast<const T*>(x);
    T* o = static_cast<T*>(out);
    const double f = convert<double>(convert<T>(fill));  // as where() rounds it
#pragma omp parallel if (rows * n > kParallelWork && rows > 1)
    {
      std::vector<double> e(static_cast<size_t>(n));
#pragma omp for schedule(static)
      for (int64_t r = 0; r < rows; ++r) {
        const T* row = in + r * n;
        const bool* keep = mask.data + mask_row_offset(mask, r);
        auto value = [&](int64_t j) { return keep[j * mask.col_stride] ? convert<double>(row[j]) : f; };
        double m = -std::numeric_limits<double>::infinity();
        for (int64_t j = 0; j < n; ++j) m = nan_max(m, value(j));
        double s = 0;
        for (int64_t j = 0; j < n; ++j) s += e[size_t(j)] = std::exp(value(j) - m);
        for (int64_t j = 0; j < n; ++j) o[r * n + j] = convert<T>(e[size_t(j)] / s);
      }
    }
  });
}

void masked_softmax_backward(const void* y, const void* grad, const MaskRows& mask, void* dx,
                             int64_t rows, int64_t n, DType dtype) {
  visit_floating(dtype, "masked_softmax", [&](auto z) {
    using T = decltype(z);
    const T* py = static_cast<const T*>(y);
    const T* pg = static_cast<const T*>(grad);
    T* o = static_cast<T*>(dx);
#pragma omp parallel for schedule(static) if (rows * n > kParallelWork && rows > 1)
    for (int64_t r = 0; r < rows; ++r) {
      const bool* keep = mask.data + mask_row_offset(mask, r);
      const int64_t base = r * n;
      double s = 0;
      for (int64_t j = 0; j < n; ++j) s += convert<double>(pg[base + j]) * convert<double>(py[base + j]);
      for (int64_t j = 0; j < n; ++j) {
        const double v = convert<double>(py[base + j]), g = convert<double>(pg[base + j]);
        o[base + j] = keep[j * mask.col_stride] ? convert<T>(v * (g - s)) : T(0);
      }
    }
  });
}

}  // namespace loom::cpu
