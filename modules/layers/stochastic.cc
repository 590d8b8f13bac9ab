#include "modules/layers/stochastic.h"

#include "core/ops/dropout.h"

namespace loom::nn {

Tensor Dropout::call(const Tensor& x, bool det) const {
  if (rate == 0.0 || det) return x;
  return call(x, det, rate == 1.0 ? random::Key{} : make_rng(rng_collection));
}

Tensor Dropout::call(const Tensor& x, bool det, random::Key rng) const {
  LOOM_CHECK(rate >= 0.0 && rate <= 1.0, ValueError, "Dropout at ", path_text(),
             ": rate must be in [0, 1], got ", rate);
  if (rate == 0.0 || det) return x;
  return dropout(x, rate, rng, broadcast_dims);
}

}  // namespace loom::nn
