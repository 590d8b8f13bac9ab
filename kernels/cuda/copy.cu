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

// A dense copy or cast, V elements per access (16 bytes of the wider type), then the tail.
template <typename S, typename D, int V>
__global__ void dense_cast_kernel(const S* src, D* dst, int64_t n) {
  const int64_t tid = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  const int64_t stride = int64_t(gridDim.x) * blockDim.x, packs = n / V;
  for (int64_t p = tid; p < packs; p += stride) {
    const Pack<S, V> s = load_pack<V>(src + p * V);
    Pack<D, V> d;
#pragma unroll
    for (int v = 0; v < V; ++v) d.v[v] = cvt<D>(s.v[v]);
    store_pack<V>(dst + p * V, d);
  }
  for (int64_t i = packs * V + tid; i < n; i += stride) dst[i] = cvt<D>(src[i]);
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
  const bool dense = index.ndim <= 1 && (index.ndim == 0 || index.strides[0] == 1);
  visit_device_dtype(src_dtype, [&](auto s) {
    using S = decltype(s);
    visit_device_dtype(dst_dtype, [&](auto d) {
      using D = decltype(d);
      constexpr int V = 16 / int(sizeof(S) > sizeof(D) ? sizeof(S) : sizeof(D));
      if (dense && pack_aligned<S, V>(src) && pack_aligned<D, V>(dst))
        dense_cast_kernel<S, D, V><<<blocks_for((n + V - 1) / V), 256, 0, stream>>>(
            static_cast<const S*>(src), static_cast<D*>(dst), n);
      else
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
