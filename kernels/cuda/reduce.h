// CUDA reductions; same contract as kernels/cpu/reduce.h.
#pragma once
#include "core/dtype.h"
#include "core/shape.h"
#include "kernels/cpu/reduce.h"
#include "kernels/cuda/runtime.h"

namespace loom::cuda {

void reduce(ReduceOp op, const void* x, DType dtype, const Shape& kept_shape,
            const Shape& kept_strides, const Shape& reduced_shape, const Shape& reduced_strides,
            void* out, Stream stream);

}  // namespace loom::cuda
