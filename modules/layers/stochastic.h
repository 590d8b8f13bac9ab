// flax.linen.Dropout: with probability `rate` an element is zeroed, the others scaled by
// 1 / (1 - rate); the mask is bernoulli(make_rng("dropout"), 1 - rate) with broadcast_dims set
// to 1, bit-identical to Flax for the same key. deterministic = true (evaluation) returns x.
//
// Example:
//   Tensor h = nn::Dropout{.rate = 0.1}(x, /*deterministic=*/!train);
//   model.apply(vars, {.rngs = {{"dropout", key}}}, x);   // a dropout rng is needed in training
#pragma once
#include <optional>
#include <string>

#include "core/ops/reduce.h"
#include "core/random.h"
#include "modules/module.h"

namespace loom::nn {

struct Dropout : Module<Dropout> {
  double rate = 0.0;
  Axes broadcast_dims = {};
  bool deterministic = false;
  std::string rng_collection = "dropout";

  Tensor call(const Tensor& x) const { return call(x, deterministic); }
  /// Flax's call(x, deterministic): the argument overrides the field.
  Tensor call(const Tensor& x, bool deterministic_override) const;
  /// With an explicit key instead of make_rng(rng_collection).
  Tensor call(const Tensor& x, bool deterministic_override, random::Key rng) const;
};

}  // namespace loom::nn
