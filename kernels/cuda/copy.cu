#include "kernels/cuda/copy.h"
#include "kernels/cuda/device_types.cuh"

namespace loom::cuda {
namespace {

template <typename S, typename D>
__global__ void strided_copy_kernel(const S* src, StridedIndex index, D* dst, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    dst[i] = cvt<D>(src[index.offset(i)]);
}

template <typename T>
__global__ void fill_kernel(T* dst, T value, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    dst[i] = value;
}

}  // namespace

void strided_copy(const void* src, DType src_dtype, const Shape& shape, const Shape& src_strides,
                  void* dst, DType dst_dtype, Stream stream) {
  int64_t n = shape_numel(shape);
  if (n == 0) return;
  LOOM_CHECK(shape.size() <= size_t(StridedIndex::kMaxDims), ShapeError,
             "strided_copy: rank ", shape.size(), " exceeds the CUDA limit of 8");
  StridedIndex index;
  index.ndim = int(shape.size());
  for (size_t d = 0; d < shape.size(); ++d) {
    index.shape[d] = shape[d];
    index.strides[d] = src_strides[d];
  }
  visit_device_dtype(src_dtype, [&](auto s) {
    using S = decltype(s);
    visit_device_dtype(dst_dtype, [&](auto d) {
      using D = decltype(d);
      strided_copy_kernel<<<blocks_for(n), 256, 0, stream>>>(static_cast<const S*>(src), index,
                                                              static_cast<D*>(dst), n);
    });
  });
  LOOM_CUDA_CHECK(cudaGetLastError());
}

void fill(void* dst, DType dtype, int64_t n, double value, Stream stream) {
  if (n == 0) return;
  visit_device_dtype(dtype, [&](auto z) {
    using T = decltype(z);
    T v;
    if constexpr (std::is_same_v<T, __nv_bfloat16>) v = __float2bfloat16_rn(float(value));
    else if constexpr (std::is_same_v<T, __half>) v = __float2half_rn(float(value));
    else if constexpr (std::is_same_v<T, bool>) v = value != 0;
    else v = static_cast<T>(value);
    fill_kernel<<<blocks_for(n), 256, 0, stream>>>(static_cast<T*>(dst), v, n);
  });
  LOOM_CUDA_CHECK(cudaGetLastError());
}

}  // namespace loom::cuda
