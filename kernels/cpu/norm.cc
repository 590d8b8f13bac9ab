#include "kernels/cpu/norm.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "core/error.h"

namespace loom::cpu {
namespace {

constexpr int64_t kParallelWork = 32768;

/// Flax's fast variance max(0, E[x^2] - E[x]^2), where a NaN stays NaN as with jnp.maximum (an
/// infinite input gives inf - inf; std::max(0.0, NaN) would say 0).
inline double clamp_variance(double v) { return v < 0.0 ? 0.0 : v; }
// Column reductions split the rows into at most this many fixed chunks, so the summation order
// (and hence the result) does not depend on the number of threads.
constexpr int64_t kMaxChunks = 64;

template <typename T>
using acc_of = std::conditional_t<std::is_same_v<T, double>, double, float>;

template <typename A>
inline double param(const void* p, int64_t j, double absent) {
  return p ? double(static_cast<const A*>(p)[j]) : absent;
}

/// fn(std::bool_constant<a>, std::bool_constant<b>): the epilogue's flags become compile-time, so
/// the per-element loops carry no branches and vectorise as the plain norm does.
template <typename Fn>
void with_flags(bool a, bool b, Fn&& fn) {
  if (a) {
    if (b) return fn(std::true_type{}, std::true_type{});
    return fn(std::true_type{}, std::false_type{});
  }
  if (b) return fn(std::false_type{}, std::true_type{});
  return fn(std::false_type{}, std::false_type{});
}

/// Epilogue helpers on the output type: selecting in one width keeps the loops vectorisable (GCC
/// does not vectorise a double select fed by float loads).
template <typename O>
inline bool positive(O v) {
  if constexpr (std::is_arithmetic_v<O>) return v > O(0);
  else return convert<float>(v) > 0.0f;
}
template <typename O>
inline O relu_value(O v) {
  if constexpr (std::is_arithmetic_v<O>) return v < O(0) ? O(0) : v;
  else return convert<float>(v) < 0.0f ? convert<O>(0.0f) : v;
}
/// dst[j] = g[j] where y[j] > 0, else 0 (the relu's backward), over one row.
template <typename O>
inline void mask_row(const O* g, const O* y, O* dst, int64_t c) {
  const O zero = convert<O>(0.0f);
  for (int64_t j = 0; j < c; ++j) {
    const O gj = g[j];  // loaded unconditionally, so the select needs no masked load
    dst[j] = positive(y[j]) ? gj : zero;
  }
}

/// How many row chunks for_row_chunks splits m rows into (the callers' partial sums, a row each).
int64_t row_chunks(int64_t m) { return std::max<int64_t>(1, std::min(kMaxChunks, m)); }

/// Fixed row chunks of a column reduction: fn(chunk, row_begin, row_end) in parallel, then the
/// per-chunk partials are summed in chunk order by the caller.
template <typename Fn>
int64_t for_row_chunks(int64_t m, int64_t c, Fn&& fn) {
  const int64_t chunks = row_chunks(m);
  const int64_t per = (m + chunks - 1) / chunks;
#pragma omp parallel for schedule(static) if (m * c > kParallelWork && chunks > 1)
  for (int64_t k = 0; k < chunks; ++k) fn(k, std::min(m, k * per), std::min(m, (k + 1) * per));
  return chunks;
}

}  // namespace

void norm_rows(const void* x, DType dtype, void* y, DType out_dtype, const void* scale,
               const void* bias, void* mean, void* rstd, int64_t rows, int64_t n, double eps,
               bool rms) {
  const char* op = rms ? "rms_norm" : "layer_norm";
  visit_floating_in_out(dtype, out_dtype, op, [&](auto tz, auto oz) {
    using T = decltype(tz);
    using O = decltype(oz);
    using A = acc_of<T>;
    const T* px = static_cast<const T*>(x);
    O* py = static_cast<O*>(y);
    A* pm = static_cast<A*>(mean);
    A* pr = static_cast<A*>(rstd);
#pragma omp parallel for schedule(static) if (rows * n > kParallelWork && rows > 1)
    for (int64_t r = 0; r < rows; ++r) {
      const T* row = px + r * n;
      double s = 0, s2 = 0;
      for (int64_t j = 0; j < n; ++j) {
        double v = convert<double>(row[j]);
        s += v;
        s2 += v * v;
      }
      double mu = rms ? 0.0 : s / double(n);
      double var = rms ? s2 / double(n) : clamp_variance(s2 / double(n) - mu * mu);
      double inv = 1.0 / std::sqrt(var + eps);
      if (!rms) pm[r] = A(mu);
      pr[r] = A(inv);
      for (int64_t j = 0; j < n; ++j) {
        double v = (convert<double>(row[j]) - mu) * (inv * param<A>(scale, j, 1.0));
        if (!rms) v += param<A>(bias, j, 0.0);
        py[r * n + j] = convert<O>(v);
      }
    }
  });
}

void norm_rows_backward(const void* x, DType dtype, const void* g, DType out_dtype,
                        const void* mean, const void* rstd, const void* scale, void* dx,
                        int64_t rows, int64_t n, bool rms, bool accumulate) {
  const char* op = rms ? "rms_norm" : "layer_norm";
  visit_floating_in_out(dtype, out_dtype, op, [&](auto tz, auto oz) {
    using T = decltype(tz);
    using O = decltype(oz);
    using A = acc_of<T>;
    const T* px = static_cast<const T*>(x);
    const O* pg = static_cast<const O*>(g);
    const A* pm = static_cast<const A*>(mean);
    const A* pr = static_cast<const A*>(rstd);
    T* pd = static_cast<T*>(dx);
#pragma omp parallel for schedule(static) if (rows * n > kParallelWork && rows > 1)
    for (int64_t r = 0; r < rows; ++r) {
      const double mu = rms ? 0.0 : double(pm[r]), inv = double(pr[r]);
      double sum_gs = 0, sum_gsx = 0;
      for (int64_t j = 0; j < n; ++j) {
        double gs = convert<double>(pg[r * n + j]) * param<A>(scale, j, 1.0);
        double xhat = (convert<double>(px[r * n + j]) - mu) * inv;
        sum_gs += gs;
        sum_gsx += gs * xhat;
      }
      const double mean_gs = rms ? 0.0 : sum_gs / double(n), mean_gsx = sum_gsx / double(n);
      for (int64_t j = 0; j < n; ++j) {
        double gs = convert<double>(pg[r * n + j]) * param<A>(scale, j, 1.0);
        double xhat = (convert<double>(px[r * n + j]) - mu) * inv;
        const double d = inv * (gs - mean_gs - xhat * mean_gsx);
        pd[r * n + j] = convert<T>(accumulate ? convert<double>(pd[r * n + j]) + d : d);
      }
    }
  });
}

void norm_param_grads(const void* x, DType dtype, const void* g, DType out_dtype,
                      const void* mean, const void* rstd, void* dscale, void* dbias, int64_t rows,
                      int64_t n) {
  visit_floating_in_out(dtype, out_dtype, mean ? "layer_norm" : "rms_norm", [&](auto tz, auto oz) {
    using T = decltype(tz);
    using O = decltype(oz);
    using A = acc_of<T>;
    const T* px = static_cast<const T*>(x);
    const O* pg = static_cast<const O*>(g);
    const A* pm = static_cast<const A*>(mean);
    const A* pr = static_cast<const A*>(rstd);
    const size_t part_size = size_t(row_chunks(rows) * n);
    std::vector<double> part_s(part_size, 0.0), part_b(part_size, 0.0);
    const int64_t chunks = for_row_chunks(rows, n, [&](int64_t k, int64_t r0, int64_t r1) {
      double* ps = part_s.data() + k * n;
      double* pb = part_b.data() + k * n;
      for (int64_t r = r0; r < r1; ++r) {
        const double mu = pm ? double(pm[r]) : 0.0, inv = double(pr[r]);
        for (int64_t j = 0; j < n; ++j) {
          const double gv = convert<double>(pg[r * n + j]);
          ps[j] += gv * ((convert<double>(px[r * n + j]) - mu) * inv);
          pb[j] += gv;
        }
      }
    });
    for (int64_t j = 0; j < n; ++j) {
      double s = 0, b = 0;
      for (int64_t k = 0; k < chunks; ++k) s += part_s[size_t(k * n + j)], b += part_b[size_t(k * n + j)];
      if (dscale) static_cast<A*>(dscale)[j] = A(s);
      if (dbias) static_cast<A*>(dbias)[j] = A(b);
    }
  });
}

void channel_stats(const void* x, DType dtype, int64_t m, int64_t c, void* mean, void* var) {
  visit_floating_in_out(dtype, dtype, "batch_norm", [&](auto tz, auto) {
    using T = decltype(tz);
    using A = acc_of<T>;
    const T* px = static_cast<const T*>(x);
    std::vector<double> part(size_t(2 * row_chunks(m) * c), 0.0);
    int64_t chunks = for_row_chunks(m, c, [&](int64_t k, int64_t begin, int64_t end) {
      double* s = part.data() + 2 * k * c;
      double* s2 = s + c;
      for (int64_t i = begin; i < end; ++i)
        for (int64_t j = 0; j < c; ++j) {
          double v = convert<double>(px[i * c + j]);
          s[j] += v;
          s2[j] += v * v;
        }
    });
    A* pm = static_cast<A*>(mean);
    A* pv = static_cast<A*>(var);
    for (int64_t j = 0; j < c; ++j) {
      double s = 0, s2 = 0;
      for (int64_t k = 0; k < chunks; ++k) {
        s += part[size_t(2 * k * c + j)];
        s2 += part[size_t(2 * k * c + c + j)];
      }
      double mu = s / double(m);
      pm[j] = A(mu);
      pv[j] = A(clamp_variance(s2 / double(m) - mu * mu));
    }
  });
}

void channel_normalize(const void* x, DType dtype, void* y, DType out_dtype, const void* mean,
                       const void* var, const void* scale, const void* bias,
                       const void* residual, bool relu, int64_t m, int64_t c, double eps) {
  visit_floating_in_out(dtype, out_dtype, "batch_norm", [&](auto tz, auto oz) {
    using T = decltype(tz);
    using O = decltype(oz);
    using A = acc_of<T>;
    const T* px = static_cast<const T*>(x);
    O* py = static_cast<O*>(y);
    const T* pres = static_cast<const T*>(residual);
    std::vector<double> mu(static_cast<size_t>(c)), mul(static_cast<size_t>(c)), add(static_cast<size_t>(c));
    for (int64_t j = 0; j < c; ++j) {
      mu[size_t(j)] = param<A>(mean, j, 0.0);
      mul[size_t(j)] = param<A>(scale, j, 1.0) / std::sqrt(param<A>(var, j, 1.0) + eps);
      add[size_t(j)] = param<A>(bias, j, 0.0);
    }
    with_flags(pres != nullptr, relu, [&](auto add_residual, auto apply_relu) {
#pragma omp parallel for schedule(static) if (m * c > kParallelWork && m > 1)
      for (int64_t i = 0; i < m; ++i)
        for (int64_t j = 0; j < c; ++j) {
          const int64_t k = i * c + j;
          double v = (convert<double>(px[k]) - mu[size_t(j)]) * mul[size_t(j)] + add[size_t(j)];
          // bn rounded to O first, as the separate add would see it (norm.h)
          if constexpr (add_residual) v = convert<double>(convert<O>(v)) + convert<double>(pres[k]);
          O out = convert<O>(v);
          if constexpr (apply_relu) out = relu_value(out);
          py[k] = out;
        }
    });
  });
}

void channel_backward_sums(const void* x, DType dtype, const void* g, DType out_dtype,
                           const void* mean, const void* rstd, const void* relu_out, int64_t m,
                           int64_t c, void* sum_g, void* sum_gx, void* g_masked) {
  visit_floating_in_out(dtype, out_dtype, "batch_norm", [&](auto tz, auto oz) {
    using T = decltype(tz);
    using O = decltype(oz);
    using A = acc_of<T>;
    const T* px = static_cast<const T*>(x);
    const O* pg = static_cast<const O*>(g);
    const A* pm = static_cast<const A*>(mean);
    const A* pr = static_cast<const A*>(rstd);
    const O* py = static_cast<const O*>(relu_out);
    O* pgm = static_cast<O*>(g_masked);
    std::vector<double> part(size_t(2 * row_chunks(m) * c), 0.0);
    int64_t chunks = 0;
    with_flags(py != nullptr, pgm != nullptr, [&](auto mask, auto store_masked) {
      chunks = for_row_chunks(m, c, [&](int64_t k, int64_t begin, int64_t end) {
        double* sg = part.data() + 2 * k * c;
        double* sgx = sg + c;
        std::vector<O> row(mask && !store_masked ? size_t(c) : 0);
        for (int64_t i = begin; i < end; ++i) {
          const O* gi = pg + i * c;
          if constexpr (mask) {
            O* dst = store_masked ? pgm + i * c : row.data();
            mask_row(gi, py + i * c, dst, c);
            gi = dst;
          }
          for (int64_t j = 0; j < c; ++j) {
            double gv = convert<double>(gi[j]);
            sg[j] += gv;
            sgx[j] += gv * (convert<double>(px[i * c + j]) - double(pm[j])) * double(pr[j]);
          }
        }
      });
    });
    A* psg = static_cast<A*>(sum_g);
    A* psgx = static_cast<A*>(sum_gx);
    for (int64_t j = 0; j < c; ++j) {
      double sg = 0, sgx = 0;
      for (int64_t k = 0; k < chunks; ++k) {
        sg += part[size_t(2 * k * c + j)];
        sgx += part[size_t(2 * k * c + c + j)];
      }
      psg[j] = A(sg);
      psgx[j] = A(sgx);
    }
  });
}

void channel_backward_dx(const void* x, DType dtype, const void* g, DType out_dtype,
                         const void* mean, const void* rstd, const void* scale,
                         const void* relu_out, const void* sum_g, const void* sum_gx, void* dx,
                         int64_t m, int64_t c) {
  visit_floating_in_out(dtype, out_dtype, "batch_norm", [&](auto tz, auto oz) {
    using T = decltype(tz);
    using O = decltype(oz);
    using A = acc_of<T>;
    const T* px = static_cast<const T*>(x);
    const O* pg = static_cast<const O*>(g);
    const A* pm = static_cast<const A*>(mean);
    const A* pr = static_cast<const A*>(rstd);
    const A* psg = static_cast<const A*>(sum_g);
    const A* psgx = static_cast<const A*>(sum_gx);
    const O* py = static_cast<const O*>(relu_out);
    T* pd = static_cast<T*>(dx);
    auto run = [&](auto mask) {
#pragma omp parallel if (m * c > kParallelWork && m > 1)
      {
        std::vector<O> row(mask ? size_t(c) : 0);
#pragma omp for schedule(static)
        for (int64_t i = 0; i < m; ++i) {
          const O* gi = pg + i * c;
          if constexpr (mask) {
            mask_row(gi, py + i * c, row.data(), c);
            gi = row.data();
          }
          for (int64_t j = 0; j < c; ++j) {
            double inv = double(pr[j]);
            double xhat = (convert<double>(px[i * c + j]) - double(pm[j])) * inv;
            double v = convert<double>(gi[j]) - double(psg[j]) / double(m) - xhat * double(psgx[j]) / double(m);
            pd[i * c + j] = convert<T>(param<A>(scale, j, 1.0) * inv * v);
          }
        }
      }
    };
    if (py) run(std::true_type{});
    else run(std::false_type{});
  });
}

}  // namespace loom::cpu
