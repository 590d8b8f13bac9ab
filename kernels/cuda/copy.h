// CUDA copy, cast and fill kernels (launched on `stream`).
#pragma once
#include <cstdint>
#include <vector>

#include "core/dtype.h"
#include "core/shape.h"
#include "kernels/cuda/runtime.h"

namespace loom::cuda {

void strided_copy(const void* src, DType src_dtype, const Shape& shape, const Shape& src_strides,
                  void* dst, DType dst_dtype, Stream stream);
/// A contiguous tensor of n elements cast into another (cast_many).
struct CastJob {
  const void* src;
  void* dst;
  int64_t n;
};
/// Every job's src cast from src_dtype into its dst as dst_dtype, as strided_copy converts, in one
/// launch per kMaxCastJobs jobs (a whole tree of params in one kernel instead of one per leaf).
constexpr int kMaxCastJobs = 128;
void cast_many(const std::vector<CastJob>& jobs, DType src_dtype, DType dst_dtype, Stream stream);
void fill(void* dst, DType dtype, int64_t n, double value, Stream stream);
/// dst[i] = start + i * step, computed in double and rounded once to `dtype` (arange).
void fill_range(void* dst, DType dtype, int64_t n, double start, double step, Stream stream);

}  // namespace loom::cuda
