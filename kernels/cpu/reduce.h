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

}  // namespace loom::cpu
