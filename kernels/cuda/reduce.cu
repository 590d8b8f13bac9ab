#include <algorithm>
#include <atomic>
#include <cuda/std/limits>
#include <memory>

#include "core/storage.h"
#include "kernels/cuda/device_types.cuh"
#include "kernels/cuda/reduce.h"

namespace loom::cuda {
namespace {

// Floats accumulate in float (double for f64), integers and bools in int64.
template <typename T>
using reduce_acc_t = std::conditional_t<std::is_floating_point_v<T> ||
                                            std::is_same_v<T, __nv_bfloat16> ||
                                            std::is_same_v<T, __half>,
                                        acc_t<T>, int64_t>;

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

template <typename A>
__device__ __forceinline__ A warp_reduce(ReduceOp op, A v) {
  for (int o = 16; o > 0; o >>= 1) v = combine<A>(op, v, __shfl_down_sync(0xffffffffu, v, o));
  return v;
}

// Result valid in thread 0. Every thread of the block must call it (it synchronises).
template <typename A>
__device__ A block_reduce(ReduceOp op, A v) {
  __shared__ A warp_partial[32];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  v = warp_reduce<A>(op, v);
  if (lane == 0) warp_partial[warp] = v;
  __syncthreads();
  v = threadIdx.x < (blockDim.x >> 5) ? warp_partial[threadIdx.x] : identity<A>(op);
  if (warp == 0) v = warp_reduce<A>(op, v);
  __syncthreads();  // warp_partial may be rewritten by the caller's next iteration
  return v;
}

// Offset of reduced element j: kContig when the reduced elements of an output are adjacent.
template <bool kContig>
__device__ __forceinline__ int64_t red_offset(const StridedIndex& ri, int64_t j) {
  if constexpr (kContig) return j;
  else return ri.offset(j);
}

// A block per (output, split); its threads stride over the split's share of reduced elements.
// Used when the reduced elements are (mostly) adjacent in memory, so the block's loads coalesce.
template <typename T, typename A, bool kContig>
__global__ void reduce_block_kernel(ReduceOp op, const T* x, StridedIndex ki, StridedIndex ri,
                                    int64_t m, int64_t k, int64_t chunk, int splits, T* out,
                                    A* partial) {
  for (int64_t b = blockIdx.x; b < m * splits; b += gridDim.x) {
    const int64_t i = b % m;
    const int64_t s = b / m;
    const int64_t base = ki.offset(i);
    const int64_t lo = s * chunk, hi = lo + chunk < k ? lo + chunk : k;
    A acc = identity<A>(op);
    for (int64_t j = lo + threadIdx.x; j < hi; j += blockDim.x)
      acc = combine<A>(op, acc, cvt<A>(x[base + red_offset<kContig>(ri, j)]));
    acc = block_reduce<A>(op, acc);
    if (threadIdx.x == 0) {
      if (splits == 1) out[i] = cvt<T>(acc);
      else partial[s * m + i] = acc;
    }
  }
}

// A warp per output: rows of contiguous reduced elements too short to keep a block busy.
template <typename T, typename A>
__global__ void reduce_warp_kernel(ReduceOp op, const T* x, StridedIndex ki, int64_t m, int64_t k,
                                   T* out) {
  const int lane = threadIdx.x & 31;
  const int64_t warps = int64_t(gridDim.x) * (blockDim.x >> 5);
  for (int64_t i = blockIdx.x * int64_t(blockDim.x >> 5) + (threadIdx.x >> 5); i < m; i += warps) {
    const T* row = x + ki.offset(i);
    A acc = identity<A>(op);
    for (int64_t j = lane; j < k; j += 32) acc = combine<A>(op, acc, cvt<A>(row[j]));
    acc = warp_reduce<A>(op, acc);
    if (lane == 0) out[i] = cvt<T>(acc);
  }
}

// A thread per (output, split), looping over the split's reduced elements. Used when the kept
// dimension is the contiguous one (e.g. summing a [batch, features] gradient over the batch):
// neighbouring threads then read neighbouring addresses.
template <typename T, typename A, bool kOneDim>
__global__ void reduce_column_kernel(ReduceOp op, const T* x, StridedIndex ki, StridedIndex ri,
                                     int64_t m, int64_t k, int64_t chunk, T* out, A* partial) {
  const int64_t s = blockIdx.y;
  const int64_t lo = s * chunk, hi = lo + chunk < k ? lo + chunk : k;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < m;
       i += int64_t(gridDim.x) * blockDim.x) {
    const T* base = x + ki.offset(i);
    A acc = identity<A>(op);
    if constexpr (kOneDim) {
      const int64_t st = ri.ndim ? ri.strides[0] : 0;
      for (int64_t j = lo; j < hi; ++j) acc = combine<A>(op, acc, cvt<A>(base[j * st]));
    } else {
      for (int64_t j = lo; j < hi; ++j) acc = combine<A>(op, acc, cvt<A>(base[ri.offset(j)]));
    }
    if (gridDim.y == 1) out[i] = cvt<T>(acc);
    else partial[s * m + i] = acc;
  }
}

// Second pass of a split reduction, combining the splits in a fixed order (deterministic).
template <typename T, typename A>
__global__ void finalize_kernel(ReduceOp op, const A* partial, int64_t splits, int64_t m, T* out) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < m;
       i += int64_t(gridDim.x) * blockDim.x) {
    A acc = identity<A>(op);
    for (int64_t s = 0; s < splits; ++s) acc = combine<A>(op, acc, partial[s * m + i]);
    out[i] = cvt<T>(acc);
  }
}

// --- argmax / argmin ---

// True when (a, ai) should win over (b, bi): NaN first, then the extreme, then the lower index.
template <typename A>
__device__ __forceinline__ bool arg_better(bool is_max, A a, int64_t ai, A b, int64_t bi) {
  const bool an = a != a, bn = b != b;
  if (an || bn) return an && (!bn || ai < bi);
  if (a == b) return ai < bi;
  return is_max ? a > b : a < b;
}

template <typename T, typename A>
__global__ void arg_thread_kernel(bool is_max, const T* x, StridedIndex ki, int64_t m, int64_t n,
                                  int64_t stride, int32_t* out) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < m;
       i += int64_t(gridDim.x) * blockDim.x) {
    const T* row = x + ki.offset(i);
    A best = cvt<A>(row[0]);
    int64_t best_i = 0;
    for (int64_t j = 1; j < n && best == best; ++j) {
      A v = cvt<A>(row[j * stride]);
      if (v != v || (is_max ? v > best : v < best)) {
        best = v;
        best_i = j;
      }
    }
    out[i] = int32_t(best_i);
  }
}

// A warp per output along a contiguous axis: each lane scans a strided share, then the lanes
// merge their (value, index) pairs.
template <typename T, typename A>
__global__ void arg_warp_kernel(bool is_max, const T* x, StridedIndex ki, int64_t m, int64_t n,
                                int32_t* out) {
  const int lane = threadIdx.x & 31;
  const int64_t warps = int64_t(gridDim.x) * (blockDim.x >> 5);
  for (int64_t i = blockIdx.x * int64_t(blockDim.x >> 5) + (threadIdx.x >> 5); i < m; i += warps) {
    const T* row = x + ki.offset(i);
    A best = A(0);
    int64_t best_i = -1;  // -1: this lane has seen nothing
    for (int64_t j = lane; j < n; j += 32) {
      A v = cvt<A>(row[j]);
      if (best_i < 0 || (best == best && (v != v || (is_max ? v > best : v < best)))) {
        best = v;
        best_i = j;
      }
    }
    for (int o = 16; o > 0; o >>= 1) {
      A ov = __shfl_down_sync(0xffffffffu, best, o);
      int64_t oi = __shfl_down_sync(0xffffffffu, best_i, o);
      if (oi >= 0 && (best_i < 0 || arg_better<A>(is_max, ov, oi, best, best_i))) {
        best = ov;
        best_i = oi;
      }
    }
    if (lane == 0) out[i] = int32_t(best_i);
  }
}

// --- host side ---

int multiprocessor_count() {
  static std::atomic<int> cached[64];
  int dev = 0;
  LOOM_CUDA_CHECK(cudaGetDevice(&dev));
  int n = dev < 64 ? cached[dev].load() : 0;
  if (n == 0) {
    LOOM_CUDA_CHECK(cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, dev));
    if (dev < 64) cached[dev].store(n);
  }
  return n;
}

std::shared_ptr<Storage> scratch(size_t nbytes) {
  int dev = 0;
  LOOM_CUDA_CHECK(cudaGetDevice(&dev));
  return Storage::allocate(nbytes, Device::cuda(dev));
}

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
unsigned grid_cap(int64_t blocks) { return unsigned(blocks < (1 << 20) ? (blocks < 1 ? 1 : blocks) : (1 << 20)); }

}  // namespace

void reduce(ReduceOp op, const void* x, DType dtype, const Shape& kept_shape,
            const Shape& kept_strides, const Shape& reduced_shape, const Shape& reduced_strides,
            void* out, Stream stream) {
  const int64_t m = shape_numel(kept_shape), k = shape_numel(reduced_shape);
  if (m == 0) return;
  Shape ks, kst, rs, rst;
  merge_dims(kept_shape, kept_strides, ks, kst);
  merge_dims(reduced_shape, reduced_strides, rs, rst);
  const StridedIndex ki = make_strided_index(ks, kst, "reduce"), ri = make_strided_index(rs, rst, "reduce");
  const bool red_contig = rs.empty() || (rs.size() == 1 && rst[0] == 1);
  const bool kept_inner = !ks.empty() && kst.back() == 1;
  const int64_t sms = multiprocessor_count();
  enum class Plan { Warp, Block, Column } plan;
  if (k <= 16 || (kept_inner && !red_contig)) plan = Plan::Column;
  else if (red_contig && k <= 512) plan = Plan::Warp;
  else plan = Plan::Block;

  // Split the reduced elements across several blocks when there are too few outputs to fill
  // the GPU; a second kernel then combines the splits.
  int64_t splits = 1, chunk = k > 0 ? k : 1;
  if (plan == Plan::Block && m < sms * 8 && k > 4096) {
    splits = std::min<int64_t>({ceil_div(sms * 8, m), ceil_div(k, 2048), 1024});
  } else if (plan == Plan::Column && m < sms * 1024 && k > 64) {
    splits = std::min<int64_t>({ceil_div(sms * 1024, m), ceil_div(k, 32), 1024});
  }
  if (splits > 1) {
    chunk = ceil_div(k, splits);
    splits = ceil_div(k, chunk);
  }

  visit_device_dtype(dtype, [&](auto z) {
    using T = decltype(z);
    using A = reduce_acc_t<T>;
    const T* px = static_cast<const T*>(x);
    T* po = static_cast<T*>(out);
    std::shared_ptr<Storage> buffer;
    A* partial = nullptr;
    if (splits > 1) {
      buffer = scratch(size_t(splits * m) * sizeof(A));
      partial = static_cast<A*>(buffer->data());
    }
    switch (plan) {
      case Plan::Warp:
        reduce_warp_kernel<T, A><<<grid_cap(ceil_div(m, 8)), 256, 0, stream>>>(op, px, ki, m, k, po);
        break;
      case Plan::Block:
        if (red_contig)
          reduce_block_kernel<T, A, true><<<grid_cap(m * splits), 256, 0, stream>>>(
              op, px, ki, ri, m, k, chunk, int(splits), po, partial);
        else
          reduce_block_kernel<T, A, false><<<grid_cap(m * splits), 256, 0, stream>>>(
              op, px, ki, ri, m, k, chunk, int(splits), po, partial);
        break;
      case Plan::Column: {
        dim3 grid(unsigned(std::min<int64_t>(ceil_div(m, 256), 65535)), unsigned(splits));
        if (rs.size() <= 1)
          reduce_column_kernel<T, A, true><<<grid, 256, 0, stream>>>(op, px, ki, ri, m, k, chunk,
                                                                     po, partial);
        else
          reduce_column_kernel<T, A, false><<<grid, 256, 0, stream>>>(op, px, ki, ri, m, k, chunk,
                                                                      po, partial);
        break;
      }
    }
    LOOM_CUDA_CHECK(cudaGetLastError());
    if (splits > 1) {
      finalize_kernel<T, A><<<blocks_for(m), 256, 0, stream>>>(op, partial, splits, m, po);
      LOOM_CUDA_CHECK(cudaGetLastError());
    }
  });
}

void arg_reduce(bool is_max, const void* x, DType dtype, const Shape& kept_shape,
                const Shape& kept_strides, int64_t n, int64_t axis_stride, int32_t* out,
                Stream stream) {
  const int64_t m = shape_numel(kept_shape);
  if (m == 0) return;
  LOOM_CHECK(n > 0, ShapeError, "argmax/argmin: empty axis");
  Shape ks, kst;
  merge_dims(kept_shape, kept_strides, ks, kst);
  const StridedIndex ki = make_strided_index(ks, kst, is_max ? "argmax" : "argmin");
  visit_device_dtype(dtype, [&](auto z) {
    using T = decltype(z);
    using A = reduce_acc_t<T>;
    const T* px = static_cast<const T*>(x);
    if (axis_stride == 1 && n >= 64)
      arg_warp_kernel<T, A><<<grid_cap(ceil_div(m, 8)), 256, 0, stream>>>(is_max, px, ki, m, n, out);
    else
      arg_thread_kernel<T, A><<<blocks_for(m), 256, 0, stream>>>(is_max, px, ki, m, n, axis_stride,
                                                                 out);
  });
  LOOM_CUDA_CHECK(cudaGetLastError());
}

}  // namespace loom::cuda
