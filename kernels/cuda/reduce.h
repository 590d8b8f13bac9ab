// CUDA reductions; same contract as kernels/cpu/reduce.h. Deterministic: a given shape and layout
// always combines the elements in the same order (split reductions finish in a second pass
// rather than with atomics).
#pragma once
#include "core/dtype.h"
#include "core/shape.h"
#include "kernels/cpu/reduce.h"
#include "kernels/cuda/runtime.h"

namespace loom::cuda {

void reduce(ReduceOp op, const void* x, DType dtype, const Shape& kept_shape,
            const Shape& kept_strides, const Shape& reduced_shape, const Shape& reduced_strides,
            void* out, Stream stream);

/// As cpu::arg_reduce (first extreme, first NaN wins; int32 output).
void arg_reduce(bool is_max, const void* x, DType dtype, const Shape& kept_shape,
                const Shape& kept_strides, int64_t n, int64_t axis_stride, int32_t* out,
                Stream stream);

}  // namespace loom::cuda
