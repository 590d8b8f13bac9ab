// A bool mask over rows of n elements, read through its broadcast strides (never materialised
// per row): masked_softmax's (CPU and CUDA) and the fused attention's. Plain C++, shared by the
// CPU and CUDA kernels.
#pragma once
#include <cstdint>

#include "core/shape.h"

namespace loom {

/// Element j of row r is kept where data[(offset of r over row_shape / row_strides) +
/// j * col_stride] is true; data == nullptr keeps everything.
struct RowMask {
  const bool* data = nullptr;
  Shape row_shape, row_strides;
  int64_t col_stride = 0;
};

}  // namespace loom
