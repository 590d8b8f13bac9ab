// CPU reductions. The input is described as `kept` dims (one output element each, output
// contiguous in kept order) and `reduced` dims, each with its input strides.
#pragma once
#include "core/dtype.h"
#include "core/shape.h"

namespace loom {
enum class ReduceOp : uint8_t { Sum, Max, Min };
}

namespace loom::cpu {

void reduce(ReduceOp op, const void* x, DType dtype, const Shape& kept_shape,
            const Shape& kept_strides, const Shape& reduced_shape, const Shape& reduced_strides,
            void* out);

/// Index of the first maximum (is_max) or minimum along one axis of length `n` > 0 with input
/// stride `axis_stride`, for every kept position (output int32, contiguous in kept order). A NaN
/// counts as the extreme, so the first NaN wins (jnp.argmax / jnp.argmin).
void arg_reduce(bool is_max, const void* x, DType dtype, const Shape& kept_shape,
                const Shape& kept_strides, int64_t n, int64_t axis_stride, int32_t* out);

}  // namespace loom::cpu
