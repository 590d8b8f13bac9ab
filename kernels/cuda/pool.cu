// One thread per output element (forward) or input element (backward), channels fastest so a
// warp reads consecutive channels of the same window position; max/min keep each output's
// position in its window (one byte for windows under 255 elements, kernels/cpu/pool.h); images (two spatial dims) take
// a kernel without per-window-element index division that moves 16 bytes of channels at a time. The selection rule and the
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

template <typename T, typename S>
__global__ void pool_forward_kernel(PoolOp op, PoolParams p, const T* x, T* out, S* selection,
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
          sel = inside ? int32_t(k) : -1;
        }
        nan = nan || v != v;
      }
    }
    if (op == PoolOp::Avg) {
      A div = A(p.include_pad ? p.wn : inside_count(p, start));
      out[e] = cvt<T>(best / div);
    } else {
      out[e] = cvt<T>(nan ? ::cuda::std::numeric_limits<A>::quiet_NaN() : best);
      if (selection) selection[e] = S(sel);
    }
  }
}

template <typename T, typename S>
__global__ void pool_backward_kernel(PoolOp op, PoolParams p, const T* gout, const S* selection,
                                     T* gin, int64_t total) {
  using A = acc_t<T>;
  for (int64_t e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; e < total;
       e += int64_t(gridDim.x) * blockDim.x) {
    int64_t c = e % p.channels, r = e / p.channels;
    int64_t n = r / p.in_sp, i = r % p.in_sp;
    int64_t olo[kMaxDims], ohi[kMaxDims], o[kMaxDims], ips[kMaxDims];
    bool any = true;
    for (int d = p.nd - 1; d >= 0; --d) {
      int64_t ip = i % p.in[d];
      ips[d] = ip;
      i /= p.in[d];
      int64_t num = ip + p.lo[d] - p.win[d] + 1;
      olo[d] = num <= 0 ? 0 : (num + p.stride[d] - 1) / p.stride[d];
      int64_t hi = (ip + p.lo[d]) / p.stride[d];
      ohi[d] = hi < p.out[d] - 1 ? hi : p.out[d] - 1;
      any = any && olo[d] <= ohi[d];
      o[d] = olo[d];
    }
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
      } else {
        int64_t k = 0;  // this input's position in the window of output o
        for (int d = 0; d < p.nd; ++d) k = k * p.win[d] + ips[d] - (o[d] * p.stride[d] - p.lo[d]);
        if (selection[at] == S(k)) acc += cvt<A>(gout[at]);
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

// Two spatial dims (images, NHWC), the common case: the same rules as the kernels above, with
// the window walked as two nested loops and index arithmetic in I (int32 when it fits), instead
// of dividing by every window extent for every window element. A thread takes V consecutive
// channels (16 bytes of T when the channels and pointers allow, else 1), so the index
// arithmetic runs once per V channels and every access moves V elements.
template <typename T, typename S, typename I, int V>
__global__ void pool2d_forward_kernel(PoolOp op, PoolParams p, const T* x, T* out,
                                      S* selection, I total_packs) {
  using A = acc_t<T>;
  const A pad = op == PoolOp::Max ? -::cuda::std::numeric_limits<A>::infinity()
                                  : ::cuda::std::numeric_limits<A>::infinity();
  const I C = I(p.channels), CP = C / V, H = I(p.in[0]), W = I(p.in[1]), OH = I(p.out[0]),
          OW = I(p.out[1]);
  const I KH = I(p.win[0]), KW = I(p.win[1]);
  for (I e = I(blockIdx.x) * I(blockDim.x) + I(threadIdx.x); e < total_packs;
       e += I(gridDim.x) * I(blockDim.x)) {
    const I c = (e % CP) * V, r = e / CP;
    const I ow = r % OW, r2 = r / OW;
    const I oh = r2 % OH, n = r2 / OH;
    const I h0 = oh * I(p.stride[0]) - I(p.lo[0]), w0 = ow * I(p.stride[1]) - I(p.lo[1]);
    const T* xs = x + int64_t(n) * H * W * C + c;
    A best[V];
    int32_t sel[V];
    bool nan[V];
#pragma unroll
    for (int j = 0; j < V; ++j) best[j] = A(0), sel[j] = -1, nan[j] = false;
    bool first = true;
    for (I kh = 0; kh < KH; ++kh) {
      const I h = h0 + kh;
      for (I kw = 0; kw < KW; ++kw) {
        const I w = w0 + kw;
        const bool inside = h >= 0 && h < H && w >= 0 && w < W;
        Pack<T, V> v{};
        if (inside) v = load_pack<V>(xs + (int64_t(h) * W + w) * C);
#pragma unroll
        for (int j = 0; j < V; ++j) {
          if (op == PoolOp::Avg) {
            if (inside) best[j] += cvt<A>(v.v[j]);
          } else {
            const A a = inside ? cvt<A>(v.v[j]) : pad;
            if (first || (op == PoolOp::Max ? !(best[j] >= a) : !(best[j] <= a))) {
              best[j] = a;
              sel[j] = inside ? int32_t(kh * KW + kw) : -1;
            }
            nan[j] = nan[j] || a != a;
          }
        }
        first = false;
      }
    }
    Pack<T, V> result;
    if (op == PoolOp::Avg) {
      I count = KH * KW;
      if (!p.include_pad) {
        const I hl = h0 > 0 ? h0 : 0, hh = h0 + KH < H ? h0 + KH : H;
        const I wl = w0 > 0 ? w0 : 0, wh = w0 + KW < W ? w0 + KW : W;
        count = (hh > hl ? hh - hl : 0) * (wh > wl ? wh - wl : 0);
      }
#pragma unroll
      for (int j = 0; j < V; ++j) result.v[j] = cvt<T>(best[j] / A(count));
    } else {
      Pack<S, V> chosen;
#pragma unroll
      for (int j = 0; j < V; ++j) {
        result.v[j] = cvt<T>(nan[j] ? ::cuda::std::numeric_limits<A>::quiet_NaN() : best[j]);
        chosen.v[j] = S(sel[j]);
      }
      if (selection) store_pack<V>(selection + int64_t(e) * V, chosen);
    }
    store_pack<V>(out + int64_t(e) * V, result);
  }
}

template <typename T, typename S, typename I, int V>
__global__ void pool2d_backward_kernel(PoolOp op, PoolParams p, const T* gout,
                                       const S* selection, T* gin, I total_packs) {
  using A = acc_t<T>;
  const I C = I(p.channels), CP = C / V, H = I(p.in[0]), W = I(p.in[1]), OH = I(p.out[0]),
          OW = I(p.out[1]);
  const I KH = I(p.win[0]), KW = I(p.win[1]), SH = I(p.stride[0]), SW = I(p.stride[1]);
  const I LH = I(p.lo[0]), LW = I(p.lo[1]);
  for (I e = I(blockIdx.x) * I(blockDim.x) + I(threadIdx.x); e < total_packs;
       e += I(gridDim.x) * I(blockDim.x)) {
    const I c = (e % CP) * V, r = e / CP;
    const I iw = r % W, r2 = r / W;
    const I ih = r2 % H, n = r2 / H;
    // The outputs whose windows cover (ih, iw), per dim.
    const I nh = ih + LH - KH + 1, nw = iw + LW - KW + 1;
    const I oh_lo = nh <= 0 ? 0 : (nh + SH - 1) / SH, ow_lo = nw <= 0 ? 0 : (nw + SW - 1) / SW;
    const I oh_hi = (ih + LH) / SH < OH - 1 ? (ih + LH) / SH : OH - 1;
    const I ow_hi = (iw + LW) / SW < OW - 1 ? (iw + LW) / SW : OW - 1;
    A acc[V];
#pragma unroll
    for (int j = 0; j < V; ++j) acc[j] = A(0);
    for (I oh = oh_lo; oh <= oh_hi; ++oh)
      for (I ow = ow_lo; ow <= ow_hi; ++ow) {
        const int64_t at = ((int64_t(n) * OH + oh) * OW + ow) * C + c;
        const Pack<T, V> g = load_pack<V>(gout + at);
        if (op == PoolOp::Avg) {
          I count = KH * KW;
          if (!p.include_pad) {
            const I h0 = oh * SH - LH, w0 = ow * SW - LW;
            const I hl = h0 > 0 ? h0 : 0, hh = h0 + KH < H ? h0 + KH : H;
            const I wl = w0 > 0 ? w0 : 0, wh = w0 + KW < W ? w0 + KW : W;
            count = (hh > hl ? hh - hl : 0) * (wh > wl ? wh - wl : 0);
          }
#pragma unroll
          for (int j = 0; j < V; ++j) acc[j] += cvt<A>(g.v[j]) / A(count);
        } else {
          // this input's position in the window of output (oh, ow)
          const S self = S((ih - (oh * SH - LH)) * KW + iw - (ow * SW - LW));
          const Pack<S, V> sel = load_pack<V>(selection + at);
#pragma unroll
          for (int j = 0; j < V; ++j)
            if (sel.v[j] == self) acc[j] += cvt<A>(g.v[j]);
        }
      }
    Pack<T, V> result;
#pragma unroll
    for (int j = 0; j < V; ++j) result.v[j] = cvt<T>(acc[j]);
    store_pack<V>(gin + int64_t(e) * V, result);
  }
}

// int32 indices when every flat index (outputs, inputs, spatial positions) fits, with room for
// one grid stride (blocks_for's at most 2^29 threads) past the end.
bool fits_int32(const PoolGeometry& g) {
  constexpr int64_t kMax = int64_t(1) << 30;
  return g.batch * shape_numel(g.out) * g.channels <= kMax &&
         g.batch * shape_numel(g.in) * g.channels <= kMax;
}

// run(I{}) with the 2-D kernels' index type: int32 where every flat index fits.
template <typename Run>
void with_index_type(const PoolGeometry& g, Run&& run) {
  if (fits_int32(g)) run(int32_t{});
  else run(int64_t{});
}

}  // namespace

void pool_forward(PoolOp op, const PoolGeometry& g, DType dtype, const void* x, void* out,
                  void* selection, Stream stream) {
  int64_t total = g.batch * shape_numel(g.out) * g.channels;
  if (total == 0) return;
  PoolParams p = make_params(g);
  visit_float_dtype(dtype, "pool", [&](auto z) {
    using T = decltype(z);
    const T* xt = static_cast<const T*>(x);
    T* ot = static_cast<T*>(out);
    with_selection_type(g, [&](auto sz) {
      using S = decltype(sz);
      S* sel = static_cast<S*>(selection);
      if (p.nd == 2) {
        launch_packed<T>(g.channels, {{x, sizeof(T)}, {out, sizeof(T)}, {selection, sizeof(S)}},
                         [&](auto v) {
          constexpr int V = decltype(v)::value;
          with_index_type(g, [&](auto iz) {
            using I = decltype(iz);
            pool2d_forward_kernel<T, S, I, V><<<blocks_for(total / V), 256, 0, stream>>>(
                op, p, xt, ot, sel, I(total / V));
          });
        });
      } else {
        pool_forward_kernel<T, S><<<blocks_for(total), 256, 0, stream>>>(op, p, xt, ot, sel, total);
      }
    });
  });
  LOOM_CUDA_CHECK(cudaGetLastError());
}

void pool_backward(PoolOp op, const PoolGeometry& g, DType dtype, const void* grad_out,
                   const void* selection, void* grad_in, Stream stream) {
  int64_t total = g.batch * shape_numel(g.in) * g.channels;
  if (total == 0) return;
  PoolParams p = make_params(g);
  visit_float_dtype(dtype, "pool", [&](auto z) {
    using T = decltype(z);
    const T* go = static_cast<const T*>(grad_out);
    T* gi = static_cast<T*>(grad_in);
    with_selection_type(g, [&](auto sz) {
      using S = decltype(sz);
      const S* sel = static_cast<const S*>(selection);
      if (p.nd == 2) {
        launch_packed<T>(g.channels,
                         {{grad_out, sizeof(T)}, {grad_in, sizeof(T)}, {selection, sizeof(S)}},
                         [&](auto v) {
          constexpr int V = decltype(v)::value;
          with_index_type(g, [&](auto iz) {
            using I = decltype(iz);
            pool2d_backward_kernel<T, S, I, V><<<blocks_for(total / V), 256, 0, stream>>>(
                op, p, go, sel, gi, I(total / V));
          });
        });
      } else {
        pool_backward_kernel<T, S><<<blocks_for(total), 256, 0, stream>>>(op, p, go, sel, gi, total);
      }
    });
  });
  LOOM_CUDA_CHECK(cudaGetLastError());
}

}  // namespace loom::cuda
