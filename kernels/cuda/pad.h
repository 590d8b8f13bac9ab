// CUDA padding kernels; same contracts as kernels/cpu/pad.h. pad_backward sums the padded copies
// with atomicAdd (float32 sums may differ in the last bits from run to run), so it throws
// NotImplementedError in deterministic mode.
#pragma once
#include "core/dtype.h"
#include "core/shape.h"
#include "kernels/cpu/pad.h"
#include "kernels/cuda/runtime.h"

namespace loom::cuda {

void pad(const void* x, const Shape& x_shape, const Shape& x_strides, void* out,
         const Shape& out_shape, const Shape& lo, PadMode mode, double value, DType dtype,
         Stream stream);
void pad_backward(const void* g, const Shape& out_shape, void* dx, const Shape& x_shape,
                  const Shape& lo, PadMode mode, DType dtype, Stream stream);

}  // namespace loom::cuda
