#include "core/determinism.h"
#include "kernels/cuda/device_types.cuh"
#include "kernels/cuda/pad.h"

namespace loom::cuda {
namespace {

struct PadIndex {
  int ndim = 0;
  PadMode mode = PadMode::Constant;
  int64_t out_shape[8] = {};
  int64_t x_shape[8] = {};
  int64_t x_strides[8] = {};
  int64_t lo[8] = {};
  // Offset into x of output element `linear`, or -1 inside a constant pad.
  __device__ __forceinline__ int64_t source(int64_t linear) const {
    int64_t off = 0;
    for (int d = ndim - 1; d >= 0; --d) {
      const int64_t p = linear % out_shape[d];
      linear /= out_shape[d];
      const int64_t j = pad_source_index(p - lo[d], x_shape[d], mode);
      if (j < 0) return -1;
      off += j * x_strides[d];
    }
    return off;
  }
};

PadIndex make_pad_index(const Shape& x_shape, const Shape& x_strides, const Shape& out_shape,
                        const Shape& lo, PadMode mode) {
  LOOM_CHECK(out_shape.size() <= 8, ShapeError, "pad: rank ", out_shape.size(),
             " exceeds the CUDA limit of 8 (shape ", shape_str(x_shape), ")");
  PadIndex pi;
  pi.ndim = int(out_shape.size());
  pi.mode = mode;
  for (size_t d = 0; d < out_shape.size(); ++d) {
    pi.out_shape[d] = out_shape[d];
    pi.x_shape[d] = x_shape[d];
    pi.x_strides[d] = x_strides[d];
    pi.lo[d] = lo[d];
  }
  return pi;
}

template <typename T>
__global__ void pad_kernel(const T* x, PadIndex pi, T* out, int64_t n, T fill) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t src = pi.source(i);
    out[i] = src < 0 ? fill : x[src];
  }
}

// The trailing dims that are neither padded nor strided (NHWC's channels, say) form rows copied
// V elements at a time: the index arithmetic runs once per V elements, not per element.
template <typename T, int V>
__global__ void pad_rows_kernel(const T* x, PadIndex pi, T* out, int64_t rows, int64_t row_packs,
                                T fill) {
  Pack<T, V> fill_pack;
#pragma unroll
  for (int e = 0; e < V; ++e) fill_pack.v[e] = fill;
  LOOM_GRID_STRIDE_LOOP(i, rows * row_packs) {
    const int64_t src = pi.source(i / row_packs);
    store_pack<V>(out + i * V, src < 0 ? fill_pack : load_pack<V>(x + src + (i % row_packs) * V));
  }
}

template <typename T>
__global__ void pad_backward_kernel(const T* g, PadIndex pi, T* dx, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t src = pi.source(i);
    if (src >= 0) atomicAdd(dx + src, g[i]);
  }
}

}  // namespace

void pad(const void* x, const Shape& x_shape, const Shape& x_strides, void* out,
         const Shape& out_shape, const Shape& lo, PadMode mode, double value, DType dtype,
         Stream stream) {
  const int64_t n = shape_numel(out_shape);
  if (n == 0) return;
  PadIndex pi = make_pad_index(x_shape, x_strides, out_shape, lo, mode);
  visit_device_dtype(dtype, [&](auto z) {
    using T = decltype(z);
    T fill;
    if constexpr (std::is_same_v<T, __nv_bfloat16>) fill = __float2bfloat16_rn(float(value));
    else if constexpr (std::is_same_v<T, __half>) fill = __float2half_rn(float(value));
    else if constexpr (std::is_same_v<T, bool>) fill = value != 0;
    else fill = static_cast<T>(value);
    constexpr int V = kPack16<T>;
    // Rows: the trailing dims without padding over which x is contiguous.
    int64_t inner = 1;
    size_t outer_dims = out_shape.size();
    while (outer_dims > 0) {
      const size_t d = outer_dims - 1;
      if (lo[d] != 0 || out_shape[d] != x_shape[d] || x_strides[d] != inner) break;
      inner *= x_shape[d];
      --outer_dims;
    }
    bool rows_aligned = V > 1 && inner % V == 0 && pack_aligned<T, V>(x) && pack_aligned<T, V>(out);
    for (size_t d = 0; d < outer_dims && rows_aligned; ++d) rows_aligned = x_strides[d] % V == 0;
    if (rows_aligned) {
      const Shape outer(out_shape.begin(), out_shape.begin() + outer_dims);
      PadIndex rows = make_pad_index(Shape(x_shape.begin(), x_shape.begin() + outer_dims),
                                     Shape(x_strides.begin(), x_strides.begin() + outer_dims),
                                     outer, Shape(lo.begin(), lo.begin() + outer_dims), mode);
      const int64_t row_packs = inner / V, n_packs = shape_numel(outer) * row_packs;
      pad_rows_kernel<T, V><<<blocks_for(n_packs), 256, 0, stream>>>(
          static_cast<const T*>(x), rows, static_cast<T*>(out), shape_numel(outer), row_packs, fill);
    } else {
      pad_kernel<T><<<blocks_for(n), 256, 0, stream>>>(static_cast<const T*>(x), pi,
                                                        static_cast<T*>(out), n, fill);
    }
  });
  LOOM_CUDA_CHECK(cudaGetLastError());
}

void pad_backward(const void* g, const Shape& out_shape, void* dx, const Shape& x_shape,
                  const Shape& lo, PadMode mode, DType dtype, Stream stream) {
  // Wrap and Reflect copy an element several times; atomicAdd sums the copies' gradients in a
  // run-dependent order, so the result can vary in the last bits.
  LOOM_CHECK(!deterministic(), NotImplementedError,
             "pad backward (the CUDA gradient of pad in wrap or reflect mode) accumulates with "
             "atomicAdd and is not deterministic; deterministic mode is on: compute this op on "
             "the CPU, use constant padding or call set_deterministic(false)");
  const int64_t n = shape_numel(out_shape);
  if (n == 0 || shape_numel(x_shape) == 0) return;
  PadIndex pi = make_pad_index(x_shape, contiguous_strides(x_shape), out_shape, lo, mode);
  if (dtype == DType::F32) {
    pad_backward_kernel<float><<<blocks_for(n), 256, 0, stream>>>(static_cast<const float*>(g), pi,
                                                                   static_cast<float*>(dx), n);
  } else if (dtype == DType::F64) {
    pad_backward_kernel<double><<<blocks_for(n), 256, 0, stream>>>(
        static_cast<const double*>(g), pi, static_cast<double*>(dx), n);
  } else {
    LOOM_THROW(DTypeError, "pad backward: accumulates in float32 or float64, got ", dtype_name(dtype));
  }
  LOOM_CUDA_CHECK(cudaGetLastError());
}

}  // namespace loom::cuda
