#include "kernels/cpu/softmax.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "core/error.h"
#include "kernels/cpu/row_exp.h"

namespace loom::cpu {
namespace {

// Work per parallel task is a full softmax row; only parallelise when there is enough of it.
constexpr int64_t kParallelWork = 32768;

// out(j) = exp(v(j) - max) / sum over a row of n values v(j); each exponential is taken once
// into `e` (n elements), which the quotients read back.
template <typename C, typename Value, typename Out>
void exp_normalize(int64_t n, Value v, C* e, Out out) {
  exponentials(n, v, e);
  const C s = C(sum_of(n, [e](int64_t j) { return double(e[j]); }));
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

// dx[j] = 0 where row's mask element j is false (where's backward), after softmax's backward
// wrote every element: a loop of its own vectorises, one on the mask inside the formula did not.
template <typename T>
void zero_masked(const bool* keep, int64_t col_stride, int64_t n, T* dx) {
  if (col_stride == 0) {
    if (!*keep) std::fill(dx, dx + n, T(0));
  } else if (col_stride == 1) {
    const auto* bytes = reinterpret_cast<const uint8_t*>(keep);
    for (int64_t j = 0; j < n; ++j) dx[j] = bytes[j] != 0 ? dx[j] : T(0);
  } else {
    for (int64_t j = 0; j < n; ++j)
      if (!keep[j * col_stride]) dx[j] = T(0);
  }
}

}  // namespace

void softmax(const void* x, void* out, int64_t outer, int64_t n, int64_t inner, DType dtype,
             bool log) {
  visit_floating(dtype, log ? "log_softmax" : "softmax", [&](auto z) {
    using T = decltype(z);
    using C = RowCompute<T>;
    const T* in = static_cast<const T*>(x);
    T* o = static_cast<T*>(out);
    const int64_t columns = outer * inner;
#pragma omp parallel if (columns * n > kParallelWork && columns > 1)
    {
      std::vector<C> e(static_cast<size_t>(n));  // the exponentials
#pragma omp for schedule(static)
      for (int64_t c = 0; c < columns; ++c) {
        const int64_t base = (c / inner) * n * inner + c % inner;
        const T* row = in + base;
        T* orow = o + base;
        auto value = [row, inner](int64_t j) { return convert<C>(row[j * inner]); };
        if (log) {  // (x - max) - log(sum), in double: two terms of one sign, rounded once
          const C m = exponentials(n, value, e.data());
          const double lse = std::log(sum_of(n, [&](int64_t j) { return double(e[size_t(j)]); }));
          for (int64_t j = 0; j < n; ++j)
            orow[j * inner] = convert<T>(double(value(j)) - double(m) - lse);
        } else {
          exp_normalize(n, value, e.data(), [&](int64_t j, C p) { orow[j * inner] = convert<T>(p); });
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
      const double s = sum_of(n, [&](int64_t j) {
        const int64_t k = base + j * inner;
        return log ? convert<double>(pg[k]) : convert<double>(pg[k]) * convert<double>(py[k]);
      });
      for (int64_t j = 0; j < n; ++j) {
        const int64_t k = base + j * inner;
        const double g = convert<double>(pg[k]), v = convert<double>(py[k]);
        // log_softmax's y <= 0: e^y in the compute type, as the forward's; a NaN y (a row with
        // a NaN or +inf logit) gives NaN, as JAX's and the GPU's exp(y) do
        const RowCompute<T> yc = convert<RowCompute<T>>(py[k]);
        o[k] = convert<T>(log ? g - double(yc != yc ? yc : exp_or_zero(yc)) * s : v * (g - s));
      }
    }
  });
}

void masked_softmax(const void* x, const RowMask& mask, double fill, void* out, int64_t rows,
                    int64_t n, DType dtype) {
  visit_floating(dtype, "masked_softmax", [&](auto z) {
    using T = decltype(z);
    using C = RowCompute<T>;
    const T* in = static_cast<const T*>(x);
    T* o = static_cast<T*>(out);
    const C f = convert<C>(convert<T>(fill));  // as where() rounds it
#pragma omp parallel if (rows * n > kParallelWork && rows > 1)
    {
      std::vector<C> e(static_cast<size_t>(n));  // exp_normalize's scratch
#pragma omp for schedule(static)
      for (int64_t r = 0; r < rows; ++r) {
        const T* row = in + r * n;
        const bool* keep = mask_row(mask, r);
        auto normalize = [&](auto value) {
          exp_normalize(n, value, e.data(), [&](int64_t j, C p) { o[r * n + j] = convert<T>(p); });
        };
        // (The values' lambdas capture by value: with f by reference, the stores into the
        // exponentials' scratch might alias it, and GCC left the loop scalar.)
        if (!keep || (mask.col_stride == 0 && *keep)) {
          normalize([row](int64_t j) { return convert<C>(row[j]); });
        } else if (mask.col_stride == 0) {
          normalize([f](int64_t) { return f; });
        } else if (mask.col_stride == 1) {
          // The mask's bytes as integers, every value loaded: GCC vectorises this select, not
          // one on bool or a conditional load.
          const auto* bytes = reinterpret_cast<const uint8_t*>(keep);
          normalize([row, bytes, f](int64_t j) {
            const C x = convert<C>(row[j]);
            return bytes[j] != 0 ? x : f;
          });
        } else {
          const int64_t stride = mask.col_stride;
          normalize([row, keep, stride, f](int64_t j) {
            return keep[j * stride] ? convert<C>(row[j]) : f;
          });
        }
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
      const double s = sum_of(n, [&](int64_t j) {
        return convert<double>(pg[base + j]) * convert<double>(py[base + j]);
      });
      for (int64_t j = 0; j < n; ++j) {
        const double v = convert<double>(py[base + j]), g = convert<double>(pg[base + j]);
        o[base + j] = convert<T>(v * (g - s));
      }
      if (keep) zero_masked(keep, mask.col_stride, n, o + base);
    }
  });
}

}  // namespace loom::cpu
