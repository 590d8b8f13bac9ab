// CPU elementwise kernels. Operands are read through strides (0 on broadcast dimensions, see
// broadcast_strides); outputs are contiguous in `out_shape`.
#pragma once
#include "core/dtype.h"
#include "core/shape.h"
#include "kernels/elementwise_math.h"

namespace loom::cpu {

void unary(UnaryOp op, const void* x, const Shape& x_strides, void* out, const Shape& out_shape,
           DType dtype, double alpha);
/// out = grad * f'(x) (all of `dtype`).
void unary_backward(UnaryOp op, const void* x, const void* grad, void* out, int64_t n, DType dtype,
                    double alpha);
/// out = a (op) b; a and b have `in_dtype`, out has in_dtype or bool for comparisons.
void binary(BinaryOp op, const void* a, const Shape& a_strides, const void* b,
            const Shape& b_strides, DType in_dtype, void* out, const Shape& out_shape);
void where(const void* cond, const Shape& cond_strides, const void* a, const Shape& a_strides,
           const void* b, const Shape& b_strides, DType dtype, void* out, const Shape& out_shape);

}  // namespace loom::cpu
