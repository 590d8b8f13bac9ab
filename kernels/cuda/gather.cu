#include <array>
#include <limits>

#include "core/determinism.h"
#include "kernels/cuda/device_types.cuh"
#include "kernels/cuda/gather.h"

namespace loom::cuda {
namespace {

/// Up to 8 dims shared by N strided operands, passed to kernels by value.
template <int N>
struct MultiIndex {
  int ndim = 0;
  int64_t shape[8] = {};
  int64_t strides[N][8] = {};
  __device__ __forceinline__ void offsets(int64_t linear, int64_t (&off)[N]) const {
    for (int k = 0; k < N; ++k) off[k] = 0;
    for (int d = ndim - 1; d >= 0; --d) {
      const int64_t i = linear % shape[d];
      linear /= shape[d];
      for (int k = 0; k < N; ++k) off[k] += i * strides[k][d];
    }
  }
};

// Drops size-1 dims and merges neighbours contiguous for every operand (as cpu::StridedLoop), so
// typical gathers need one to three dims of index arithmetic and fit the 8-dim limit.
template <int N>
MultiIndex<N> make_multi_index(const Shape& shape, const std::array<const Shape*, N>& strides,
                               const char* op) {
  Shape ms;
  std::array<Shape, N> mst;
  for (size_t d = 0; d < shape.size(); ++d) {
    if (shape[d] == 1) continue;
    bool merge = !ms.empty();
    for (int k = 0; k < N && merge; ++k) merge = mst[k].back() == (*strides[k])[d] * shape[d];
    if (merge) {
      ms.back() *= shape[d];
      for (int k = 0; k < N; ++k) mst[k].back() = (*strides[k])[d];
    } else {
      ms.push_back(shape[d]);
      for (int k = 0; k < N; ++k) mst[k].push_back((*strides[k])[d]);
    }
  }
  LOOM_CHECK(ms.size() <= 8, ShapeError, op, ": ", ms.size(),
             " non-mergeable dimensions exceed the CUDA limit of 8 (shape ", shape_str(shape), ")");
  MultiIndex<N> mi;
  mi.ndim = int(ms.size());
  for (size_t d = 0; d < ms.size(); ++d) {
    mi.shape[d] = ms[d];
    for (int k = 0; k < N; ++k) mi.strides[k][d] = mst[k][d];
  }
  return mi;
}

__device__ __forceinline__ int64_t resolve(int64_t i, int64_t n, GatherMode mode) {
  if (mode == GatherMode::Clip) return i < 0 ? 0 : (i >= n ? n - 1 : i);
  if (i < 0) i += n;
  return i >= 0 && i < n ? i : -1;
}

template <typename T>
T fill_value() {
  if constexpr (std::is_same_v<T, bool>) return true;
  else if constexpr (std::is_same_v<T, __nv_bfloat16>) return __float2bfloat16_rn(std::numeric_limits<float>::quiet_NaN());
  else if constexpr (std::is_same_v<T, __half>) return __float2half_rn(std::numeric_limits<float>::quiet_NaN());
  else if constexpr (std::is_floating_point_v<T>) return std::numeric_limits<T>::quiet_NaN();
  else if constexpr (std::is_signed_v<T>) return std::numeric_limits<T>::lowest();
  else return std::numeric_limits<T>::max();
}

template <typename T>
__global__ void strided_assign_kernel(const T* src, T* dst, MultiIndex<2> mi, int64_t n) {
  LOOM_GRID_STRIDE_LOOP(i, n) {
    int64_t off[2];
    mi.offsets(i, off);
    dst[off[1]] = src[off[0]];
  }
}

template <typename T>
__global__ void gather_kernel(const T* x, int64_t axis_stride, int64_t axis_len,
                              const int64_t* idx, MultiIndex<2> mi, T* out, int64_t n,
                              GatherMode mode, T fill) {
  LOOM_GRID_STRIDE_LOOP(i, n) {
    int64_t off[2];
    mi.offsets(i, off);
    const int64_t j = resolve(idx[off[1]], axis_len, mode);
    out[i] = j < 0 ? fill : x[off[0] + j * axis_stride];
  }
}

template <typename T>
__global__ void scatter_add_kernel(const T* src, const int64_t* idx, MultiIndex<2> mi, T* dst,
                                   int64_t axis_stride, int64_t axis_len, int64_t n,
                                   GatherMode mode) {
  LOOM_GRID_STRIDE_LOOP(i, n) {
    int64_t off[2];
    mi.offsets(i, off);
    const int64_t j = resolve(idx[off[1]], axis_len, mode);
    if (j >= 0) atomicAdd(dst + off[0] + j * axis_stride, src[i]);
  }
}

template <typename T>
__global__ void one_hot_kernel(const int64_t* idx, int64_t classes, T* out, int64_t n) {
  LOOM_GRID_STRIDE_LOOP(i, n) { out[i] = cvt<T>(idx[i / classes] == i % classes ? 1.0f : 0.0f); }
}

template <typename T>
__global__ void triangle_kernel(const T* x, T* out, int64_t rows, int64_t cols, int64_t k,
                                bool lower, int64_t n) {
  LOOM_GRID_STRIDE_LOOP(i, n) {
    const int64_t c = i % cols, r = (i / cols) % rows;
    const bool keep = lower ? c - r <= k : c - r >= k;
    out[i] = keep ? x[i] : cvt<T>(0.0f);
  }
}

}  // namespace

void strided_assign(const void* src, const Shape& src_strides, void* dst, const Shape& dst_strides,
                    const Shape& shape, DType dtype, Stream stream) {
  const int64_t n = shape_numel(shape);
  if (n == 0) return;
  auto mi = make_multi_index<2>(shape, {&src_strides, &dst_strides}, "strided_assign");
  visit_device_dtype(dtype, [&](auto z) {
    using T = decltype(z);
    strided_assign_kernel<T><<<blocks_for(n), 256, 0, stream>>>(static_cast<const T*>(src),
                                                                 static_cast<T*>(dst), mi, n);
  });
  LOOM_CUDA_CHECK(cudaGetLastError());
}

void gather(const void* x, const Shape& x_strides, int64_t axis_stride, int64_t axis_len,
            const int64_t* idx, const Shape& idx_strides, void* out, const Shape& shape,
            DType dtype, GatherMode mode, Stream stream) {
  const int64_t n = shape_numel(shape);
  if (n == 0) return;
  auto mi = make_multi_index<2>(shape, {&x_strides, &idx_strides}, "gather");
  visit_device_dtype(dtype, [&](auto z) {
    using T = decltype(z);
    gather_kernel<T><<<blocks_for(n), 256, 0, stream>>>(static_cast<const T*>(x), axis_stride,
                                                         axis_len, idx, mi, static_cast<T*>(out),
                                                         n, mode, fill_value<T>());
  });
  LOOM_CUDA_CHECK(cudaGetLastError());
}

void scatter_add(const void* src, const int64_t* idx, const Shape& idx_strides, void* dst,
                 const Shape& dst_strides, int64_t axis_stride, int64_t axis_len,
                 const Shape& shape, DType dtype, GatherMode mode, Stream stream) {
  // atomicAdd sums duplicate indices in a run-dependent order, so the result can vary.
  LOOM_CHECK(!deterministic(), NotImplementedError,
             "scatter_add (the CUDA backward of take / take_along_axis) accumulates with atomicAdd "
             "and is not deterministic; deterministic mode is on: compute this op on the CPU or "
             "call set_deterministic(false)");
  const int64_t n = shape_numel(shape);
  if (n == 0) return;
  auto mi = make_multi_index<2>(shape, {&dst_strides, &idx_strides}, "scatter_add");
  if (dtype == DType::F32) {
    scatter_add_kernel<float><<<blocks_for(n), 256, 0, stream>>>(
        static_cast<const float*>(src), idx, mi, static_cast<float*>(dst), axis_stride, axis_len,
        n, mode);
  } else if (dtype == DType::F64) {
    scatter_add_kernel<double><<<blocks_for(n), 256, 0, stream>>>(
        static_cast<const double*>(src), idx, mi, static_cast<double*>(dst), axis_stride,
        axis_len, n, mode);
  } else {
    LOOM_THROW(DTypeError, "scatter_add: accumulates in float32 or float64, got ", dtype_name(dtype));
  }
  LOOM_CUDA_CHECK(cudaGetLastError());
}

void one_hot(const int64_t* idx, int64_t n, int64_t classes, void* out, DType dtype, Stream stream) {
  const int64_t total = n * classes;
  if (total == 0) return;
  visit_device_dtype(dtype, [&](auto z) {
    using T = decltype(z);
    one_hot_kernel<T><<<blocks_for(total), 256, 0, stream>>>(idx, classes, static_cast<T*>(out), total);
  });
  LOOM_CUDA_CHECK(cudaGetLastError());
}

void triangle(const void* x, void* out, int64_t batch, int64_t rows, int64_t cols, int64_t k,
              bool lower, DType dtype, Stream stream) {
  const int64_t n = batch * rows * cols;
  if (n == 0) return;
  visit_device_dtype(dtype, [&](auto z) {
    using T = decltype(z);
    triangle_kernel<T><<<blocks_for(n), 256, 0, stream>>>(static_cast<const T*>(x),
                                                           static_cast<T*>(out), rows, cols, k,
                                                           lower, n);
  });
  LOOM_CUDA_CHECK(cudaGetLastError());
}

}  // namespace loom::cuda
