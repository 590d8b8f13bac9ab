// Parameter initializers (jax.nn.initializers / flax.linen.initializers): functions
// (key, shape, dtype) -> Tensor with JAX's exact formulas, so for the same key they produce
// JAX's values (bit-exact for zeros/ones/constant/uniform-family, within an ulp or two for the
// normal family; see core/random.h). Results are CPU tensors; init moves them to the device of
// the model's inputs.
//
// Example:
//   nn::Initializer k = nn::initializers::lecun_normal();      // Dense/Conv default
//   Tensor w = k(random::key(0), {784, 128}, DType::F32);
//   auto emb = nn::initializers::variance_scaling(1.0, nn::initializers::FanMode::FanIn,
//                                                nn::initializers::Distribution::Normal,
//                                                {.out_axis = {0}});   // Embed's default
#pragma once
#include <functional>
#include <string>
#include <vector>

#include "core/random.h"
#include "core/tensor.h"

namespace loom::nn {

using Initializer = std::function<Tensor(random::Key key, const Shape& shape, DType dtype)>;

namespace initializers {

Initializer zeros();
Initializer ones();
/// Every element `value`.
Initializer constant(double value);
/// normal(key) * stddev.
Initializer normal(double stddev = 1e-2);
/// uniform in [0, scale).
Initializer uniform(double scale = 1e-2);
/// truncated_normal(key, lower, upper) * stddev (no variance correction, as JAX).
Initializer truncated_normal(double stddev = 1e-2, double lower = -2.0, double upper = 2.0);

enum class FanMode { FanIn, FanOut, FanAvg, FanGeoAvg };
enum class Distribution { TruncatedNormal, Normal, Uniform };
/// Which axes of the weight are its input, output and batch axes (JAX's in_axis/out_axis/
/// batch_axis; several axes multiply). The others form the receptive field (conv kernels).
struct FanAxes {
  std::vector<int64_t> in_axis = {-2};
  std::vector<int64_t> out_axis = {-1};
  std::vector<int64_t> batch_axis = {};
};
/// fan_in = shape[in] * receptive field, fan_out likewise; variance = scale / n with n chosen by
/// `mode`; truncated_normal: truncated_normal(-2, 2) * sqrt(variance) / 0.87962566103423978
/// (the stddev of a standard normal truncated to (-2, 2)); normal: normal * sqrt(variance);
/// uniform: uniform(-1, 1) * sqrt(3 * variance). Throws ValueError for shapes below 2-D (with
/// default axes) naming the shape.
Initializer variance_scaling(double scale, FanMode mode, Distribution distribution,
                             FanAxes axes = {});
/// Flax-style strings: mode "fan_in" | "fan_out" | "fan_avg" | "fan_geo_avg", distribution
/// "truncated_normal" | "normal" | "uniform" (ValueError otherwise).
Initializer variance_scaling(double scale, const std::string& mode,
                             const std::string& distribution, FanAxes axes = {});

/// variance_scaling(1, fan_in, truncated_normal): the default kernel init of Dense and Conv.
Initializer lecun_normal(FanAxes axes = {});
Initializer lecun_uniform(FanAxes axes = {});
/// variance_scaling(1, fan_avg, truncated_normal / uniform).
Initializer glorot_normal(FanAxes axes = {});
Initializer glorot_uniform(FanAxes axes = {});
inline Initializer xavier_normal(FanAxes axes = {}) { return glorot_normal(std::move(axes)); }
inline Initializer xavier_uniform(FanAxes axes = {}) { return glorot_uniform(std::move(axes)); }
/// variance_scaling(2, fan_in, truncated_normal / uniform).
Initializer he_normal(FanAxes axes = {});
Initializer he_uniform(FanAxes axes = {});
inline Initializer kaiming_normal(FanAxes axes = {}) { return he_normal(std::move(axes)); }
inline Initializer kaiming_uniform(FanAxes axes = {}) { return he_uniform(std::move(axes)); }

/// A uniformly random orthogonal matrix (JAX: QR of a normal [max(n,m), min(n,m)] matrix with
/// the signs of R's diagonal folded into Q, transposed when rows < cols), reshaped so that
/// `column_axis` holds the columns, times `scale`. The QR runs on the host in float64, so values
/// agree with JAX within rounding, not bit for bit.
Initializer orthogonal(double scale = 1.0, int64_t column_axis = -1);

/// (fan_in, fan_out) of `shape` as JAX's _compute_fans.
std::pair<double, double> compute_fans(const Shape& shape, const FanAxes& axes = {});

}  // namespace initializers
}  // namespace loom::nn
