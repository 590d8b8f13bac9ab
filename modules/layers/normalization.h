// Normalisation layers with Flax's defaults (flax.linen.normalization): BatchNorm (momentum
// 0.99, epsilon 1e-5, biased variance, running statistics in "batch_stats"), LayerNorm and
// RMSNorm (epsilon 1e-6), GroupNorm (32 groups, epsilon 1e-6). Params are created scale first,
// then bias; statistics are computed in float32 or better.
//
// Example (training step with batch statistics):
//   auto [y, updates] = Model{.train = true}.apply_mutable(vars, {"batch_stats"}, x);
//   vars.insert("batch_stats", updates["batch_stats"]);
//
// Cross-replica BatchNorm: BatchNorm{.axis_name = "batch"} averages [mean(x), mean(x^2)] over
// replicas, weighted by each replica's example count, with the reducer registered under "batch"
// (the data-parallel code registers one per communicator); nothing is registered by default, and
// using an unregistered name throws.
#pragma once
#include <functional>
#include <optional>
#include <string>

#include "core/ops/reduce.h"
#include "modules/initializers.h"
#include "modules/module.h"

namespace loom::nn {

/// BatchNorm's statistics over replicas: (stats, count) -> the count-weighted mean of every
/// replica's stats (core/ops/norm.h, PmeanFn; dist::register_axis uses dist::pmean_weighted), so
/// replicas holding different numbers of examples give the statistics of their joint batch.
/// Must be built from differentiable loom ops or have a backward that is its transpose.
using AxisReducer = std::function<Tensor(const Tensor& stats, int64_t count)>;
/// Registers `reducer` for `axis_name` (replacing any previous one); an empty reducer removes it.
void set_axis_reducer(const std::string& axis_name, AxisReducer reducer);
/// The reducer for `axis_name`; ValueError naming it when none is registered.
AxisReducer axis_reducer(const std::string& axis_name);

struct BatchNorm : Module<BatchNorm> {
  /// true: normalise with the running statistics (evaluation); false: with the batch's and
  /// update the running statistics (needs "batch_stats" mutable, except during init).
  bool use_running_average = false;
  Axes axis = {-1};  // feature axes
  double momentum = 0.99;
  double epsilon = 1e-5;
  std::optional<DType> dtype = {};
  DType param_dtype = DType::F32;
  bool use_bias = true;
  bool use_scale = true;
  Initializer bias_init = initializers::zeros();
  Initializer scale_init = initializers::ones();
  /// Cross-replica statistics through set_axis_reducer (not used during init, as Flax).
  std::optional<std::string> axis_name = {};

  Tensor call(const Tensor& x) const;
  /// Flax's call(x, use_running_average): the argument overrides the field.
  Tensor call(const Tensor& x, bool use_running_average_override) const;
  /// relu(norm(x) + residual) (relu when `relu`; residual optional, shaped like x): ResNet's
  /// nn.relu(norm(y)) and nn.relu(residual + norm(y)) with the add and relu inside the norm's
  /// training kernels (core/ops/norm.h, BatchNormEpilogue). Same variables and numbers as
  /// composing them after call(x).
  Tensor call(const Tensor& x, const Tensor& residual, bool relu) const;

 private:
  Tensor normalize(const Tensor& x, bool running, const Tensor& residual, bool relu) const;
};

struct LayerNorm : Module<LayerNorm> {
  double epsilon = 1e-6;
  std::optional<DType> dtype = {};
  DType param_dtype = DType::F32;
  bool use_bias = true;
  bool use_scale = true;
  Initializer bias_init = initializers::zeros();
  Initializer scale_init = initializers::ones();
  Axes reduction_axes = {-1};
  Axes feature_axes = {-1};

  Tensor call(const Tensor& x) const;
};

struct RMSNorm : Module<RMSNorm> {
  double epsilon = 1e-6;
  std::optional<DType> dtype = {};
  DType param_dtype = DType::F32;
  bool use_scale = true;
  Initializer scale_init = initializers::ones();
  Axes reduction_axes = {-1};
  Axes feature_axes = {-1};

  Tensor call(const Tensor& x) const;
};

struct GroupNorm : Module<GroupNorm> {
  /// Exactly one of num_groups and group_size (channels per group) must be set.
  std::optional<int64_t> num_groups = 32;
  std::optional<int64_t> group_size = {};
  double epsilon = 1e-6;
  std::optional<DType> dtype = {};
  DType param_dtype = DType::F32;
  bool use_bias = true;
  bool use_scale = true;
  Initializer bias_init = initializers::zeros();
  Initializer scale_init = initializers::ones();

  /// x [batch, ..., C]: statistics over every axis but the first, per group of channels.
  Tensor call(const Tensor& x) const;
};

}  // namespace loom::nn
