// CUDA elementwise kernels; same contract as kernels/cpu/elementwise.h, launched on `stream`.
#pragma once
#include "core/dtype.h"
#include "core/shape.h"
#include "kernels/cuda/runtime.h"
#include "kernels/elementwise_math.h"

namespace loom::cuda {

void unary(UnaryOp op, const void* x, const Shape& x_strides, void* out, const Shape& out_shape,
           DType dtype, double alpha, Stream stream);
void unary_backward(UnaryOp op, const void* x, const void* grad, void* out, int64_t n, DType dtype,
                    double alpha, Stream stream);
void binary(BinaryOp op, const void* a, const Shape& a_strides, const void* b,
            const Shape& b_strides, DType in_dtype, void* out, const Shape& out_shape,
            Stream stream);
void where(const void* cond, const Shape& cond_strides, const void* a, const Shape& a_strides,
           const void* b, const Shape& b_strides, DType dtype, void* out, const Shape& out_shape,
           Stream stream);

}  // namespace loom::cuda
