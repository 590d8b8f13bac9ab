// flax.linen.Embed: a table [num_embeddings, features] (default init variance_scaling(1,
// "fan_in", "normal", out_axis=0), i.e. stddev 1/sqrt(features)); call looks rows up by integer
// ids (out-of-range ids give NaN rows, as jnp.take); attend(q) = q @ table^T (tied output
// logits).
//
// Example:
//   nn::Embed embed = nn::Embed{.num_embeddings = 50257, .features = 768}.named("wte");
//   Tensor h = embed(tokens);                              // [B, T, 768]
//   Tensor logits = embed.invoke(&nn::Embed::attend, h);   // [B, T, 50257]
#pragma once
#include <optional>

#include "modules/initializers.h"
#include "modules/module.h"

namespace loom::nn {

struct Embed : Module<Embed> {
  int64_t num_embeddings = 0;
  int64_t features = 0;
  std::optional<DType> dtype = {};
  DType param_dtype = DType::F32;
  Initializer embedding_init = initializers::variance_scaling(
      1.0, initializers::FanMode::FanIn, initializers::Distribution::Normal, {.out_axis = {0}});

  /// ids (any integer dtype and shape) -> [ids..., features].
  Tensor call(const Tensor& ids) const;
  /// query [..., features] -> [..., num_embeddings].
  Tensor attend(const Tensor& query) const;
  /// The table (created on first use, as Flax's setup-defined param).
  Tensor embedding() const;
};

}  // namespace loom::nn
