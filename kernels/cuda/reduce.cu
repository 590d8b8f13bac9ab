#include <cuda/std/limits>

#include "kernels/cuda/device_types.cuh"
#include "kernels/cuda/reduce.h"

namespace loom::cuda {
namespace {

template <typename A>
__device__ __forceinline__ A combine(ReduceOp op, A acc, A v) {
  switch (op) {
    case ReduceOp::Sum: return acc + v;
    case ReduceOp::Max: return (acc != acc || v != v) ? (acc != acc ? acc : v) : (v > acc ? v : acc);
    case ReduceOp::Min: return (acc != acc || v != v) ? (acc != acc ? acc : v) : (v < acc ? v : acc);
  }
  return acc;
}

template <typename A>
__device__ __forceinline__ A identity(ReduceOp op) {
  if (op == ReduceOp::Sum) return A(0);
  if constexpr (::cuda::std::numeric_limits<A>::has_infinity)
    return op == ReduceOp::Max ? -::cuda::std::numeric_limits<A>::infinity()
                               : ::cuda::std::numeric_limits<A>::infinity();
  else
    return op == ReduceOp::Max ? ::cuda::std::numeric_limits<A>::lowest()
                               : ::cuda::std::numeric_limits<A>::max();
}

// One block per output element; threads stride over the reduced elements, then a shared-memory
// tree combines the partial results.
template <typename T, typename A>
__global__ void reduce_kernel(ReduceOp op, const T* x, StridedIndex kept, StridedIndex reduced,
                              int64_t k, T* out) {
  __shared__ A partial[256];
  int64_t base = kept.offset(blockIdx.x);
  A acc = identity<A>(op);
  for (int64_t j = threadIdx.x; j < k; j += blockDim.x)
    acc = combine<A>(op, acc, cvt<A>(x[base + reduced.offset(j)]));
  partial[threadIdx.x] = acc;
  __syncthreads();
  for (int s = blockDim.x / 2; s > 0; s >>= 1) {
    if (threadIdx.x < s) partial[threadIdx.x] = combine<A>(op, partial[threadIdx.x], partial[threadIdx.x + s]);
    __syncthreads();
  }
  if (threadIdx.x == 0) out[blockIdx.x] = cvt<T>(partial[0]);
}

StridedIndex make_index(const Shape& shape, const Shape& strides) {
  LOOM_CHECK(shape.size() <= size_t(StridedIndex::kMaxDims), ShapeError, "reduce: rank ",
             shape.size(), " exceeds the CUDA limit of 8");
  StridedIndex idx;
  idx.ndim = int(shape.size());
  for (size_t d = 0; d < shape.size(); ++d) {
    idx.shape[d] = shape[d];
    idx.strides[d] = strides[d];
  }
  return idx;
}

}  // namespace

void reduce(ReduceOp op, const void* x, DType dtype, const Shape& kept_shape,
            const Shape& kept_strides, const Shape& reduced_shape, const Shape& reduced_strides,
            void* out, Stream stream) {
  int64_t m = shape_numel(kept_shape), k = shape_numel(reduced_shape);
  if (m == 0) return;
  LOOM_CHECK(m < (int64_t(1) << 31), ShapeError, "reduce: too many outputs (", m, ")");
  StridedIndex ki = make_index(kept_shape, kept_strides), ri = make_index(reduced_shape, reduced_strides);
  visit_device_dtype(dtype, [&](auto z) {
    using T = decltype(z);
    using A = std::conditional_t<std::is_floating_point_v<T> || std::is_same_v<T, __nv_bfloat16> ||
                                     std::is_same_v<T, __half>,
                                 acc_t<T>, int64_t>;
    reduce_kernel<T, A><<<unsigned(m), 256, 0, stream>>>(op, static_cast<const T*>(x), ki, ri, k,
                                                         static_cast<T*>(out));
  });
  LOOM_CUDA_CHECK(cudaGetLastError());
}

}  // namespace loom::cuda
