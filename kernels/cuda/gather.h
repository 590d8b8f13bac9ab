// CUDA kernels for indexing ops; same contracts as kernels/cpu/gather.h, launched on `stream`.
// scatter_add uses atomicAdd, so the order in which duplicate indices are summed (and hence the
// last bits of a float32 result) may differ from run to run.
#pragma once
#include <cstdint>

#include "core/dtype.h"
#include "core/shape.h"
#include "kernels/cpu/gather.h"
#include "kernels/cuda/runtime.h"

namespace loom::cuda {

void strided_assign(const void* src, const Shape& src_strides, void* dst, const Shape& dst_strides,
                    const Shape& shape, DType dtype, Stream stream);
void gather(const void* x, const Shape& x_strides, int64_t axis_stride, int64_t axis_len,
            const int64_t* idx, const Shape& idx_strides, void* out, const Shape& shape,
            DType dtype, GatherMode mode, Stream stream);
void scatter_add(const void* src, const int64_t* idx, const Shape& idx_strides, void* dst,
                 const Shape& dst_strides, int64_t axis_stride, int64_t axis_len,
                 const Shape& shape, DType dtype, GatherMode mode, Stream stream);
void one_hot(const int64_t* idx, int64_t n, int64_t classes, void* out, DType dtype, Stream stream);
void triangle(const void* x, void* out, int64_t batch, int64_t rows, int64_t cols, int64_t k,
              bool lower, DType dtype, Stream stream);

}  // namespace loom::cuda
