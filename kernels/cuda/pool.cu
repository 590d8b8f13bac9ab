// One thread per output element (forward) or input element (backward), channels fastest so a
// warp reads consecutive channels of the same window position. The selection rule and the
// gather-form backward mirror kernels/cpu/pool.cc so the two backends agree bit for bit on
// which element receives a max-pool gradient.
#include <cuda/std/limits>

#include "kernels/cuda/device_types.cuh"
#include "kernels/cuda/pool.h"

namespace loom::cuda {
namespace {

constexpr int kMaxDims = 6;

struct PoolParams {
  int nd = 0;
  bool include_pad = true;
  int64_t channels = 1, in_sp = 1, out_sp = 1, wn = 1;
  int64_t in[kMaxDims] = {}, out[kMaxDims] = {}, win[kMaxDims] = {}, stride[kMaxDims] = {},
          lo[kMaxDims] = {};
};

PoolParams make_params(const PoolGeometry& g) {
  LOOM_CHECK(g.in.size() <= size_t(kMaxDims), ShapeError, "pool: ", g.in.size(),
             " spatial dims exceed the CUDA limit of ", kMaxDims);
  PoolParams p;
  p.nd = int(g.in.size());
  p.include_pad = g.count_include_pad;
  p.channels = g.channels;
  p.in_sp = shape_numel(g.in);
  p.out_sp = shape_numel(g.out);
  p.wn = shape_numel(g.window);
  for (int d = 0; d < p.nd; ++d) {
    p.in[d] = g.in[size_t(d)];
    p.out[d] = g.out[size_t(d)];
    p.win[d] = g.window[size_t(d)];
    p.stride[d] = g.strides[size_t(d)];
    p.lo[d] = g.pad_lo[size_t(d)];
  }
  return p;
}

__device__ __forceinline__ int64_t inside_count(const PoolParams& p, const int64_t* start) {
  int64_t count = 1;
  for (int d = 0; d < p.nd; ++d) {
    int64_t lo = start[d] > 0 ? start[d] : 0;
    int64_t hi = start[d] + p.win[d] < p.in[d] ? start[d] + p.win[d] : p.in[d];
    count *= hi > lo ? hi - lo : 0;
  }
  return count;
}

template <typename T>
__global__ void pool_forward_kernel(PoolOp op, PoolParams p, const T* x, T* out, int32_t* argmax,
                                    int64_t total) {
  using A = acc_t<T>;
  const A pad = op == PoolOp::Max ? -::cuda::std::numeric_limits<A>::infinity()
                                  : ::cuda::std::numeric_limits<A>::infinity();
  for (int64_t e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; e < total;
       e += int64_t(gridDim.x) * blockDim.x) {
    int64_t c = e % p.channels, r = e / p.channels;
    int64_t n = r / p.out_sp, o = r % p.out_sp;
    int64_t start[kMaxDims];
    for (int d = p.nd - 1; d >= 0; --d) {
      start[d] = (o % p.out[d]) * p.stride[d] - p.lo[d];
      o /= p.out[d];
    }
    const T* xs = x + n * p.in_sp * p.channels + c;
    A best = A(0);
    int32_t sel = -1;
    bool nan = false;
    for (int64_t k = 0; k < p.wn; ++k) {
      bool inside = true;
      int64_t flat = 0, rest = k, scale = 1;
      for (int d = p.nd - 1; d >= 0; --d) {
        int64_t pos = start[d] + rest % p.win[d];
        rest /= p.win[d];
        inside = inside && pos >= 0 && pos < p.in[d];
        flat += pos * scale;
        scale *= p.in[d];
      }
      if (op == PoolOp::Avg) {
        if (inside) best += cvt<A>(xs[flat * p.channels]);
      } else {
        A v = inside ? cvt<A>(xs[flat * p.channels]) : pad;
        bool take = k == 0 || (op == PoolOp::Max ? !(best >= v) : !(best <= v));
        if (take) {
          best = v;
          sel = inside ? int32_t(flat) : -1;
        }
        nan = nan || v != v;
      }
    }
    if (op == PoolOp::Avg) {
      A div = A(p.include_pad ? p.wn : inside_count(p, start));
      out[e] = cvt<T>(best / div);
    } else {
      out[e] = cvt<T>(nan ? ::cuda::std::numeric_limits<A>::quiet_NaN() : best);
      if (argmax) argmax[e] = sel;
    }
  }
}

template <typename T>
__global__ void pool_backward_kernel(PoolOp op, PoolParams p, const T* gout, const int32_t* argmax,
                                     T* gin, int64_t total) {
  using A = acc_t<T>;
  for (int64_t e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; e < total;
       e += int64_t(gridDim.x) * blockDim.x) {
    int64_t c = e % p.channels, r = e / p.channels;
    int64_t n = r / p.in_sp, i = r % p.in_sp;
    int64_t olo[kMaxDims], ohi[kMaxDims], o[kMaxDims];
    bool any = true;
    for (int d = p.nd - 1; d >= 0; --d) {
      int64_t ip = i % p.in[d];
      i /= p.in[d];
      int64_t num = ip + p.lo[d] - p.win[d] + 1;
      olo[d] = num <= 0 ? 0 : (num + p.stride[d] - 1) / p.stride[d];
      int64_t hi = (ip + p.lo[d]) / p.stride[d];
      ohi[d] = hi < p.out[d] - 1 ? hi : p.out[d] - 1;
      any = any && olo[d] <= ohi[d];
      o[d] = olo[d];
    }
    int64_t self = r % p.in_sp;
    A acc = A(0);
    while (any) {
      int64_t flat = 0;
      for (int d = 0; d < p.nd; ++d) flat = flat * p.out[d] + o[d];
      int64_t at = (n * p.out_sp + flat) * p.channels + c;
      if (op == PoolOp::Avg) {
        A div = A(p.wn);
        if (!p.include_pad) {
          int64_t start[kMaxDims];
          for (int d = 0; d < p.nd; ++d) start[d] = o[d] * p.stride[d] - p.lo[d];
          div = A(inside_count(p, start));
        }
        acc += cvt<A>(gout[at]) / div;
      } else if (argmax[at] == self) {
        acc += cvt<A>(gout[at]);
      }
      int d = p.nd - 1;
      for (; d >= 0; --d) {  // odometer over the covering box
        if (++o[d] <= ohi[d]) break;
        o[d] = olo[d];
      }
      if (d < 0) break;
    }
    gin[e] = cvt<T>(acc);
  }
}

}  // namespace

void pool_forward(PoolOp op, const PoolGeometry& g, DType dtype, const void* x, void* out,
                  int32_t* argmax, Stream stream) {
  int64_t total = g.batch * shape_numel(g.out) * g.channels;
  if (total == 0) return;
  PoolParams p = make_params(g);
  visit_float_dtype(dtype, "pool", [&](auto z) {
    using T = decltype(z);
    pool_forward_kernel<T><<<blocks_for(total), 256, 0, stream>>>(
        op, p, static_cast<const T*>(x), static_cast<T*>(out), argmax, total);
  });
  LOOM_CUDA_CHECK(cudaGetLastError());
}

void pool_backward(PoolOp op, const PoolGeometry& g, DType dtype, const void* grad_out,
                   const int32_t* argmax, void* grad_in, Stream stream) {
  int64_t total = g.batch * shape_numel(g.in) * g.channels;
  if (total == 0) return;
  PoolParams p = make_params(g);
  visit_float_dtype(dtype, "pool", [&](auto z) {
    using T = decltype(z);
    pool_backward_kernel<T><<<blocks_for(total), 256, 0, stream>>>(
        op, p, static_cast<const T*>(grad_out), argmax, static_cast<T*>(grad_in), total);
  });
  LOOM_CUDA_CHECK(cudaGetLastError());
}

}  // namespace loom::cuda
