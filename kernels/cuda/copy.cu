#include "kernels/cuda/copy.h"

#include <cstring>
#include <type_traits>

#include "core/half.h"
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

template <typename T>
__global__ void fill_range_kernel(T* dst, double start, double step, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    dst[i] = cvt<T>(__dadd_rn(start, __dmul_rn(double(i), step)));  // no FMA: as the CPU rounds
}

// `value` as a device element, converted on the host exactly as the CPU's fill converts it
// (the half types: one rounding of the double).
template <typename T>
T host_value(double value) {
  if constexpr (std::is_same_v<T, __nv_bfloat16> || std::is_same_v<T, __half>) {
    using H = std::conditional_t<std::is_same_v<T, __nv_bfloat16>, bfloat16, float16>;
    const H h = convert<H>(value);
    T d;
    static_assert(sizeof(d) == sizeof(h.bits));
    std::memcpy(&d, &h.bits, sizeof(d));
    return d;
  } else {
    return convert<T>(value);
  }
}

}  // namespace

void strided_copy(const void* src, DType src_dtype, const Shape& shape, const Shape& src_strides,
                  void* dst, DType dst_dtype, Stream stream) {
  int64_t n = shape_numel(shape);
  if (n == 0) return;
  const StridedIndex index = make_strided_index(shape, src_strides, "strided_copy");
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
    const T v = host_value<T>(value);
    fill_kernel<<<blocks_for(n), 256, 0, stream>>>(static_cast<T*>(dst), v, n);
  });
  LOOM_CUDA_CHECK(cudaGetLastError());
}

void fill_range(void* dst, DType dtype, int64_t n, double start, double step, Stream stream) {
  if (n == 0) return;
  visit_device_dtype(dtype, [&](auto z) {
    using T = decltype(z);
    fill_range_kernel<<<blocks_for(n), 256, 0, stream>>>(static_cast<T*>(dst), start, step, n);
  });
  LOOM_CUDA_CHECK(cudaGetLastError());
}

}  // namespace loom::cuda
