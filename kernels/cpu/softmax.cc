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

// e^d, which is 0 in double below -746: glibc's exp reaches that 0 through its error path
// (errno), slowly, and a causal mask sends half of every attention row's logits there.
inline double exp_or_zero(double d) { return d < -746.0 ? 0.0 : std::exp(d); }

// out(j) = exp(v(j) - max) / sum over a row of n values v(j), in double; each exponential is
// taken once into `e` (n elements), which the quotients read back.
template <typename Value, typename Out>
void exp_normalize(int64_t n, Value v, double* e, Out out) {
  double m = -std::numeric_limits<double>::infinity();
  for (int64_t j = 0; j < n; ++j) m = nan_max(m, v(j));
  double s = 0;
  for (int64_t j = 0; j < n; ++j) s += e[j] = exp_or_zero(v(j) - m);
  for (int64_t j = 0; j < n; ++j) out(j, e[j] / s);
}

// Row r's mask elements (mask.data == nullptr: every element kept).
const bool* mask_row(const RowMask& mask, int64_t r) {
  if (!mask.data) return nullptr;
  int64_t off = 0;
  for (size_t d = mask.row_shape.size(); d-- > 0;) {
    off += (r % mask.row_shape[d]) * mask.row_strides[d];
    r /= mask.row_shape[d];
  }
  return mask.data + off;
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
      std::vector<double> e(size_t(log ? 0 : n));  // exp_normalize's scratch
#pragma omp for schedule(static)
      for (int64_t c = 0; c < columns; ++c) {
        const int64_t base = (c / inner) * n * inner + c % inner;
        const T* row = in + base;
        T* orow = o + base;
        auto value = [&](int64_t j) { return convert<double>(row[j * inner]); };
        if (log) {
          double m = -std::numeric_limits<double>::infinity();
          for (int64_t j = 0; j < n; ++j) m = nan_max(m, value(j));
          double s = 0;
          for (int64_t j = 0; j < n; ++j) s += exp_or_zero(value(j) - m);
          double lse = std::log(s);
          for (int64_t j = 0; j < n; ++j) orow[j * inner] = convert<T>(value(j) - m - lse);
        } else {
          exp_normalize(n, value, e.data(), [&](int64_t j, double p) { orow[j * inner] = convert<T>(p); });
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

void masked_softmax(const void* x, const RowMask& mask, double fill, void* out, int64_t rows,
                    int64_t n, DType dtype) {
  visit_floating(dtype, "masked_softmax", [&](auto z) {
    using T = decltype(z);
    const T* in = static_cast<const T*>(x);
    T* o = static_cast<T*>(out);
    const double f = convert<double>(convert<T>(fill));  // as where() rounds it
#pragma omp parallel if (rows * n > kParallelWork && rows > 1)
    {
      std::vector<double> e(static_cast<size_t>(n));  // exp_normalize's scratch
#pragma omp for schedule(static)
      for (int64_t r = 0; r < rows; ++r) {
        const T* row = in + r * n;
        const bool* keep = mask_row(mask, r);
        auto value = [&](int64_t j) {
          return !keep || keep[j * mask.col_stride] ? convert<double>(row[j]) : f;
        };
        exp_normalize(n, value, e.data(), [&](int64_t j, double p) { o[r * n + j] = convert<T>(p); });
      }
    }
  });
}

void masked_softmax_backward(const void* y, const void* grad, const RowMask& mask, void* dx,
                             int64_t rows, int64_t n, DType dtype) {
  visit_floating(dtype, "masked_softmax", [&](auto z) {
    using T = decltype(z);
    const T* py = static_cast<const T*>(y);
    const T* pg = static_cast<const T*>(grad);
    T* o = static_cast<T*>(dx);
#pragma omp parallel for schedule(static) if (rows * n > kParallelWork && rows > 1)
    for (int64_t r = 0; r < rows; ++r) {
      const bool* keep = mask_row(mask, r);
      const int64_t base = r * n;
      double s = 0;
      for (int64_t j = 0; j < n; ++j) s += convert<double>(pg[base + j]) * convert<double>(py[base + j]);
      for (int64_t j = 0; j < n; ++j) {
        const double v = convert<double>(py[base + j]), g = convert<double>(pg[base + j]);
        o[base + j] = !keep || keep[j * mask.col_stride] ? convert<T>(v * (g - s)) : T(0);
      }
    }
  });
}

}  // namespace loom::cpu
