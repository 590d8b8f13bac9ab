#include "modules/initializers.h"

#include <cmath>

#include "core/ops/elementwise.h"
#include "core/ops/shape.h"

namespace loom::nn::initializers {
namespace {

void check_floating_init(DType dtype, const char* name, const Shape& shape) {
  LOOM_CHECK(is_floating(dtype), DTypeError, "initializers::", name, ": dtype ",
             dtype_name(dtype), " for shape ", shape_str(shape), " is not a floating type");
}

/// `value` rounded to `dtype` (JAX multiplies by jnp.array(value, dtype)).
double rounded(double value, DType dtype) {
  return visit_dtype(dtype, [&](auto t) {
    using T = decltype(t);
    return convert<double>(convert<T>(value));
  });
}

int64_t prod_axes(const Shape& shape, const std::vector<int64_t>& axes, const char* what) {
  int64_t p = 1;
  for (int64_t a : axes) p *= shape[size_t(normalize_axis(a, int64_t(shape.size()), what))];
  return p;
}

}  // namespace

std::pair<double, double> compute_fans(const Shape& shape, const FanAxes& axes) {
  bool default_in = axes.in_axis.size() == 1 && axes.in_axis[0] == -2;
  LOOM_CHECK(!(default_in && shape.size() <= 1), ValueError,
             "variance_scaling: can't compute input and output sizes of a ", shape.size(),
             "-dimensional weight of shape ", shape_str(shape),
             " with the default in_axis; it must be at least 2-D, or give in_axis explicitly");
  double in = double(prod_axes(shape, axes.in_axis, "variance_scaling in_axis"));
  double out = double(prod_axes(shape, axes.out_axis, "variance_scaling out_axis"));
  double batch = double(prod_axes(shape, axes.batch_axis, "variance_scaling batch_axis"));
  double receptive = double(shape_numel(shape)) / in / out / batch;
  return {in * receptive, out * receptive};
}

Initializer zeros() {
  return [](random::Key, const Shape& shape, DType dtype) { return loom::zeros(shape, dtype); };
}

Initializer ones() {
  return [](random::Key, const Shape& shape, DType dtype) { return loom::ones(shape, dtype); };
}

Initializer constant(double value) {
  return [value](random::Key, const Shape& shape, DType dtype) {
    return loom::full(shape, value, dtype);
  };
}

Initializer normal(double stddev) {
  return [stddev](random::Key key, const Shape& shape, DType dtype) {
    check_floating_init(dtype, "normal", shape);
    return random::normal(key, shape, dtype) * rounded(stddev, dtype);
  };
}

Initializer uniform(double scale) {
  return [scale](random::Key key, const Shape& shape, DType dtype) {
    check_floating_init(dtype, "uniform", shape);
    return random::uniform(key, shape, dtype) * rounded(scale, dtype);
  };
}

Initializer truncated_normal(double stddev, double lower, double upper) {
  return [=](random::Key key, const Shape& shape, DType dtype) {
    check_floating_init(dtype, "truncated_normal", shape);
    return random::truncated_normal(key, lower, upper, shape, dtype) * rounded(stddev, dtype);
  };
}

Initializer variance_scaling(double scale, FanMode mode, Distribution distribution,
                             FanAxes axes) {
  return [=](random::Key key, const Shape& shape, DType dtype) {
    check_floating_init(dtype, "variance_scaling", shape);
    auto [fan_in, fan_out] = compute_fans(shape, axes);
    double denominator = 0;
    switch (mode) {
      case FanMode::FanIn: denominator = fan_in; break;
      case FanMode::FanOut: denominator = fan_out; break;
      case FanMode::FanAvg: denominator = (fan_in + fan_out) / 2; break;
      case FanMode::FanGeoAvg: denominator = std::sqrt(fan_in * fan_out); break;
    }
    // JAX: variance = jnp.array(scale / denominator, dtype), then sqrt and the division by the
    // truncation constant happen in `dtype`. Rounding through float reproduces that for f32
    // (sqrt and division are correctly rounded in both); other dtypes round at each step too.
    double variance = rounded(scale / denominator, dtype);
    switch (distribution) {
      case Distribution::TruncatedNormal: {
        double stddev =
            dtype == DType::F32
                ? double(std::sqrt(float(variance)) / float(0.87962566103423978))
                : rounded(rounded(std::sqrt(variance), dtype) / rounded(0.87962566103423978, dtype),
                          dtype);
        return random::truncated_normal(key, -2.0, 2.0, shape, dtype) * stddev;
      }
      case Distribution::Normal: {
        double stddev = dtype == DType::F32 ? double(std::sqrt(float(variance)))
                                            : rounded(std::sqrt(variance), dtype);
        return random::normal(key, shape, dtype) * stddev;
      }
      case Distribution::Uniform: {
        double three_var = rounded(3 * variance, dtype);
        double bound = dtype == DType::F32 ? double(std::sqrt(float(three_var)))
                                           : rounded(std::sqrt(three_var), dtype);
        return random::uniform(key, shape, dtype, -1.0, 1.0) * bound;
      }
    }
    LOOM_THROW(ValueError, "variance_scaling: invalid distribution");
  };
}

Initializer variance_scaling(double scale, const std::string& mode,
                             const std::string& distribution, FanAxes axes) {
  FanMode m;
  if (mode == "fan_in") m = FanMode::FanIn;
  else if (mode == "fan_out") m = FanMode::FanOut;
  else if (mode == "fan_avg") m = FanMode::FanAvg;
  else if (mode == "fan_geo_avg") m = FanMode::FanGeoAvg;
  else
    LOOM_THROW(ValueError, "variance_scaling: invalid mode '", mode,
               "' (expected fan_in, fan_out, fan_avg or fan_geo_avg)");
  Distribution d;
  if (distribution == "truncated_normal") d = Distribution::TruncatedNormal;
  else if (distribution == "normal") d = Distribution::Normal;
  else if (distribution == "uniform") d = Distribution::Uniform;
  else
    LOOM_THROW(ValueError, "variance_scaling: invalid distribution '", distribution,
               "' (expected truncated_normal, normal or uniform)");
  return variance_scaling(scale, m, d, std::move(axes));
}

Initializer lecun_normal(FanAxes axes) {
  return variance_scaling(1.0, FanMode::FanIn, Distribution::TruncatedNormal, std::move(axes));
}
Initializer lecun_uniform(FanAxes axes) {
  return variance_scaling(1.0, FanMode::FanIn, Distribution::Uniform, std::move(axes));
}
Initializer glorot_normal(FanAxes axes) {
  return variance_scaling(1.0, FanMode::FanAvg, Distribution::TruncatedNormal, std::move(axes));
}
Initializer glorot_uniform(FanAxes axes) {
  return variance_scaling(1.0, FanMode::FanAvg, Distribution::Uniform, std::move(axes));
}
Initializer he_normal(FanAxes axes) {
  return variance_scaling(2.0, FanMode::FanIn, Distribution::TruncatedNormal, std::move(axes));
}
Initializer he_uniform(FanAxes axes) {
  return variance_scaling(2.0, FanMode::FanIn, Distribution::Uniform, std::move(axes));
}

namespace {

/// Householder QR of the row-major m x n matrix `a` (m >= n); returns the reduced m x n Q with
/// column j multiplied by sign(R[j][j]) (JAX's sign convention: sign(0) = 0).
std::vector<double> orthogonal_q(std::vector<double> a, int64_t m, int64_t n) {
  std::vector<double> q(static_cast<size_t>(m * n), 0.0);
  std::vector<double> r_diag(static_cast<size_t>(n));
  std::vector<std::vector<double>> vs;
  for (int64_t j = 0; j < n; ++j) {
    double norm = 0;
    for (int64_t i = j; i < m; ++i) norm += a[size_t(i * n + j)] * a[size_t(i * n + j)];
    norm = std::sqrt(norm);
    double x0 = a[size_t(j * n + j)];
    double alpha = x0 > 0 ? -norm : norm;  // LAPACK's choice avoids cancellation
    std::vector<double> v(size_t(m), 0.0);
    for (int64_t i = j; i < m; ++i) v[size_t(i)] = a[size_t(i * n + j)];
    v[size_t(j)] -= alpha;
    double vnorm2 = 0;
    for (int64_t i = j; i < m; ++i) vnorm2 += v[size_t(i)] * v[size_t(i)];
    if (vnorm2 > 0) {
      for (int64_t c = j; c < n; ++c) {
        double dot = 0;
        for (int64_t i = j; i < m; ++i) dot += v[size_t(i)] * a[size_t(i * n + c)];
        double f = 2 * dot / vnorm2;
        for (int64_t i = j; i < m; ++i) a[size_t(i * n + c)] -= f * v[size_t(i)];
      }
    }
    r_diag[size_t(j)] = a[size_t(j * n + j)];
    vs.push_back(std::move(v));
  }
  // Q = H_0 H_1 ... H_{n-1} applied to the first n columns of the identity.
  for (int64_t c = 0; c < n; ++c) {
    std::vector<double> col(size_t(m), 0.0);
    col[size_t(c)] = 1.0;
    for (int64_t j = n - 1; j >= 0; --j) {
      const auto& v = vs[size_t(j)];
      double vnorm2 = 0, dot = 0;
      for (int64_t i = j; i < m; ++i) {
        vnorm2 += v[size_t(i)] * v[size_t(i)];
        dot += v[size_t(i)] * col[size_t(i)];
      }
      if (vnorm2 == 0) continue;
      double f = 2 * dot / vnorm2;
      for (int64_t i = j; i < m; ++i) col[size_t(i)] -= f * v[size_t(i)];
    }
    double s = r_diag[size_t(c)] > 0 ? 1.0 : (r_diag[size_t(c)] < 0 ? -1.0 : 0.0);
    for (int64_t i = 0; i < m; ++i) q[size_t(i * n + c)] = col[size_t(i)] * s;
  }
  return q;
}

}  // namespace

Initializer orthogonal(double scale, int64_t column_axis) {
  return [=](random::Key key, const Shape& shape, DType dtype) {
    check_floating_init(dtype, "orthogonal", shape);
    LOOM_CHECK(shape.size() >= 2, ValueError,
               "initializers::orthogonal: requires at least a 2-D shape, got ",
               shape_str(shape));
    int64_t axis = normalize_axis(column_axis, int64_t(shape.size()), "initializers::orthogonal");
    if (shape_numel(shape) == 0) return loom::zeros(shape, dtype);
    int64_t n_cols = shape[size_t(axis)], n_rows = shape_numel(shape) / n_cols;
    int64_t big = std::max(n_rows, n_cols), small = std::min(n_rows, n_cols);
    std::vector<double> z = random::normal(key, {big, small}, dtype).to_vector<double>();
    std::vector<double> q = orthogonal_q(std::move(z), big, small);  // big x small
    std::vector<double> x(size_t(n_rows * n_cols));
    for (int64_t i = 0; i < n_rows; ++i)
      for (int64_t j = 0; j < n_cols; ++j)
        x[size_t(i * n_cols + j)] =
            n_rows < n_cols ? q[size_t(j * small + i)] : q[size_t(i * small + j)];
    Shape moved;
    for (size_t d = 0; d < shape.size(); ++d)
      if (int64_t(d) != axis) moved.push_back(shape[d]);
    moved.push_back(n_cols);
    Tensor t = from_vector<double>(x, moved).to(dtype);
    Axes perm;
    for (int64_t d = 0; d < int64_t(shape.size()) - 1; ++d) perm.push_back(d);
    perm.insert(perm.begin() + axis, int64_t(shape.size()) - 1);
    return transpose(t, perm).contiguous() * rounded(scale, dtype);
  };
}

}  // namespace loom::nn::initializers
