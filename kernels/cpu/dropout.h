// Dropout's scaling pass over raw buffers (core/ops/dropout.h); kernels/cuda/dropout.h has the
// same contract. The mask is random::bernoulli_bits's words (bit j % 32 of word j / 32) over
// `period` elements; element i of the tensor uses mask bit i % period (a mask broadcast over
// leading dims). The backward pass runs the same scaling on the gradient with the same words:
// nothing drawn again, one bit kept per mask element.
#pragma once
#include <cstdint>

#include "core/dtype.h"

namespace loom::cpu {

/// out[i] = kept(i) ? in[i] / scale : 0 (nn.Dropout's division by keep), or with `multiply`
/// out[i] = in[i] * (kept(i) ? scale : 0) (attention weights times mask / keep); computed as
/// loom's binary ops compute in `dtype` (float, or double for f64), rounded to it. `scale` is a
/// value of `dtype`.
void dropout_scale(const void* in, void* out, DType dtype, const uint32_t* words, int64_t n,
                   int64_t period, double scale, bool multiply);

}  // namespace loom::cpu
