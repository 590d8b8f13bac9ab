// Flash-attention style kernels: every query (forward, dQ) or key (dK/dV) row is owned by
// R = head_dim / 16 threads, each holding 16 of its dims in registers; the other side streams
// through shared memory in tiles of 32 rows, converted to float32 once per tile. A dot product
// over the head dim is 16 FMAs per thread and a butterfly over the R threads (which leaves the
// same sum in all of them, so they branch alike).
#include "kernels/cuda/attention.h"

#include <cuda/std/limits>

#include <type_traits>

#include "kernels/cuda/device_types.cuh"

namespace loom::cuda {
namespace {

constexpr int kDimsPerThread = 16;
constexpr int kRowsPerBlock = 64;
constexpr int kTileRows = 32;

struct KernelArgs {
  int64_t heads, q_len, kv_len;
  float scale, fill;
  bool causal;
  // Whole tiles past the causal limit can be skipped only without a mask: every row then keeps
  // key 0, so a causally masked key's weight is exactly 0 (a fully masked row, possible with a
  // mask, attends uniformly to every key, the causally masked ones included).
  bool skip_causal_tiles;
  DeviceRowMask mask;
};

template <int R>
__device__ __forceinline__ float group_sum(float v) {
#pragma unroll
  for (int o = 1; o < R; o <<= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// Element (b, row, h, d) of a contiguous [batch, len, heads, D] tensor.
template <int D>
__device__ __forceinline__ int64_t at(int64_t b, int64_t row, int64_t h, int64_t len,
                                      int64_t heads) {
  return ((b * len + row) * heads + h) * D;
}

// Loads rows [r0, r0 + kTileRows) of a [batch, len, heads, D] tensor (zeros past len) as float.
template <typename T, int D>
__device__ __forceinline__ void load_tile(float (*dst)[D], const T* src, int64_t b, int64_t h,
                                          int64_t r0, int64_t len, int64_t heads) {
  for (int idx = threadIdx.x; idx < kTileRows * D; idx += blockDim.x) {
    const int rr = idx / D, d = idx % D;
    const int64_t r = r0 + rr;
    dst[rr][d] = r < len ? cvt<float>(src[at<D>(b, r, h, len, heads) + d]) : 0.0f;
  }
}

__device__ __forceinline__ bool masked(const KernelArgs& a, const bool* mrow, int64_t i, int64_t j) {
  return (a.causal && j > i) || (mrow && !mrow[j * a.mask.col_stride]);
}

// The row this thread shares with R - 1 others (a query row in the forward and dQ passes, a key
// row in the dK/dV pass), for block (row block, batch * heads + head).
struct RowSlot {
  int part;              // which 16 head dims of the row
  int64_t bh, b, h;      // flattened batch x head, batch, head
  int64_t first, row;    // the block's first row, this thread's row
  bool active;           // row < len (threads past the end only help load tiles and shuffle)
  int64_t base;          // index of this thread's first dim of the row (row 0 when inactive)
};
template <int D>
__device__ __forceinline__ RowSlot row_slot(int64_t heads, int64_t len) {
  constexpr int R = D / kDimsPerThread;
  RowSlot r;
  r.part = int(threadIdx.x % R);
  r.bh = blockIdx.y;
  r.b = r.bh / heads;
  r.h = r.bh % heads;
  r.first = int64_t(blockIdx.x) * kRowsPerBlock;
  r.row = r.first + threadIdx.x / R;
  r.active = r.row < len;
  r.base = at<D>(r.b, r.active ? r.row : 0, r.h, len, heads) + r.part * kDimsPerThread;
  return r;
}

// Loads the tiles of rows [r0, r0 + kTileRows) of two [batch, len, heads, D] tensors (between
// barriers, so the previous tile is no longer read) and returns how many rows are real.
template <typename T, int D>
__device__ __forceinline__ int load_tiles(float (*a_dst)[D], const T* a_src, float (*b_dst)[D],
                                          const T* b_src, const RowSlot& r, int64_t r0,
                                          int64_t len, int64_t heads) {
  __syncthreads();
  load_tile<T, D>(a_dst, a_src, r.b, r.h, r0, len, heads);
  load_tile<T, D>(b_dst, b_src, r.b, r.h, r0, len, heads);
  __syncthreads();
  return len - r0 < kTileRows ? int(len - r0) : kTileRows;
}

template <typename T, int D>
__global__ void __launch_bounds__(kRowsPerBlock * (D / kDimsPerThread))
    attention_forward_kernel(const T* q, const T* k, const T* v, T* out, float* stats, KernelArgs a) {
  constexpr int R = D / kDimsPerThread;
  __shared__ float sk[kTileRows][D];
  __shared__ float sv[kTileRows][D];
  const RowSlot r = row_slot<D>(a.heads, a.q_len);
  const int part = r.part;
  const int64_t i = r.row;
  float qr[kDimsPerThread], acc[kDimsPerThread];
#pragma unroll
  for (int t = 0; t < kDimsPerThread; ++t) {
    qr[t] = r.active ? cvt<float>(q[r.base + t]) * a.scale : 0.0f;
    acc[t] = 0.0f;
  }
  const bool* mrow = r.active ? a.mask.row(r.bh * a.q_len + i) : nullptr;
  float m = -::cuda::std::numeric_limits<float>::infinity(), l = 0.0f;
  for (int64_t j0 = 0; j0 < a.kv_len; j0 += kTileRows) {
    if (a.skip_causal_tiles && j0 > r.first + kRowsPerBlock - 1) break;  // no key is visible
    const int nk = load_tiles<T, D>(sk, k, sv, v, r, j0, a.kv_len, a.heads);
    for (int jj = 0; jj < nk; ++jj) {
      float s = 0.0f;
#pragma unroll
      for (int t = 0; t < kDimsPerThread; ++t) s += qr[t] * sk[jj][part * kDimsPerThread + t];
      s = group_sum<R>(s);
      if (masked(a, mrow, i, j0 + jj)) s = a.fill;
      if (s > m) {  // online softmax: rescale what was accumulated under the old maximum
        const float alpha = __expf(m - s);
        l *= alpha;
#pragma unroll
        for (int t = 0; t < kDimsPerThread; ++t) acc[t] *= alpha;
        m = s;
      }
      const float p = __expf(s - m);
      l += p;
#pragma unroll
      for (int t = 0; t < kDimsPerThread; ++t) acc[t] += p * sv[jj][part * kDimsPerThread + t];
    }
  }
  if (!r.active) return;
#pragma unroll
  for (int t = 0; t < kDimsPerThread; ++t) out[r.base + t] = cvt<T>(acc[t] / l);
  if (part == 0) {  // the row's max and 1/sum: a weight is exp(s - max) / sum, exactly 1/kv_len
    stats[2 * (r.bh * a.q_len + i)] = m;  // for a fully masked row (max + log(sum) would round
    stats[2 * (r.bh * a.q_len + i) + 1] = 1.0f / l;  // to max when max is finfo.min)
  }
}

// delta[b, h, i] = sum_d dout * out: the softmax backward's row term.
template <typename T, int D>
__global__ void attention_delta_kernel(const T* out, const T* dout, float* delta, int64_t rows,
                                       int64_t heads, int64_t q_len) {
  for (int64_t r = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; r < rows;
       r += int64_t(gridDim.x) * blockDim.x) {
    const int64_t bh = r / q_len, i = r % q_len, b = bh / heads, h = bh % heads;
    const int64_t o = at<D>(b, i, h, q_len, heads);
    float s = 0.0f;
    for (int d = 0; d < D; ++d) s += cvt<float>(dout[o + d]) * cvt<float>(out[o + d]);
    delta[r] = s;
  }
}

template <typename T, int D>
__global__ void __launch_bounds__(kRowsPerBlock * (D / kDimsPerThread))
    attention_dq_kernel(const T* q, const T* k, const T* v, const T* dout, const float* stats,
                        const float* delta, T* dq, KernelArgs a) {
  constexpr int R = D / kDimsPerThread;
  __shared__ float sk[kTileRows][D];
  __shared__ float sv[kTileRows][D];
  const RowSlot r = row_slot<D>(a.heads, a.q_len);
  const int part = r.part;
  const int64_t i = r.row, bh = r.bh, base = r.base;
  const bool active = r.active;
  float qr[kDimsPerThread], dor[kDimsPerThread], acc[kDimsPerThread];
#pragma unroll
  for (int t = 0; t < kDimsPerThread; ++t) {
    qr[t] = active ? cvt<float>(q[base + t]) * a.scale : 0.0f;
    dor[t] = active ? cvt<float>(dout[base + t]) : 0.0f;
    acc[t] = 0.0f;
  }
  const float row_max = active ? stats[2 * (bh * a.q_len + i)] : 0.0f;
  const float row_inv_sum = active ? stats[2 * (bh * a.q_len + i) + 1] : 0.0f;
  const float row_delta = active ? delta[bh * a.q_len + i] : 0.0f;
  const bool* mrow = active ? a.mask.row(bh * a.q_len + i) : nullptr;
  for (int64_t j0 = 0; j0 < a.kv_len; j0 += kTileRows) {
    if (a.skip_causal_tiles && j0 > r.first + kRowsPerBlock - 1) break;
    const int nk = load_tiles<T, D>(sk, k, sv, v, r, j0, a.kv_len, a.heads);
    for (int jj = 0; jj < nk; ++jj) {
      float s = 0.0f, dp = 0.0f;
#pragma unroll
      for (int t = 0; t < kDimsPerThread; ++t) {
        s += qr[t] * sk[jj][part * kDimsPerThread + t];
        dp += dor[t] * sv[jj][part * kDimsPerThread + t];
      }
      s = group_sum<R>(s);
      dp = group_sum<R>(dp);
      if (masked(a, mrow, i, j0 + jj)) continue;  // the gradient of a masked logit is zero
      const float ds = __expf(s - row_max) * row_inv_sum * (dp - row_delta);
#pragma unroll
      for (int t = 0; t < kDimsPerThread; ++t) acc[t] += ds * sk[jj][part * kDimsPerThread + t];
    }
  }
  if (!active) return;
#pragma unroll
  for (int t = 0; t < kDimsPerThread; ++t) dq[base + t] = cvt<T>(acc[t] * a.scale);
}

template <typename T, int D>
__global__ void __launch_bounds__(kRowsPerBlock * (D / kDimsPerThread))
    attention_dkdv_kernel(const T* q, const T* k, const T* v, const T* dout, const float* stats,
                          const float* delta, T* dk, T* dv, KernelArgs a) {
  constexpr int R = D / kDimsPerThread;
  __shared__ float sq[kTileRows][D];
  __shared__ float sdo[kTileRows][D];
  __shared__ float s_max[kTileRows], s_inv_sum[kTileRows], s_delta[kTileRows];
  __shared__ const bool* s_mrow[kTileRows];
  const RowSlot r = row_slot<D>(a.heads, a.kv_len);
  const int part = r.part;
  const int64_t j = r.row, bh = r.bh, base = r.base;
  const bool active = r.active;
  float kr[kDimsPerThread], vr[kDimsPerThread], dk_acc[kDimsPerThread], dv_acc[kDimsPerThread];
#pragma unroll
  for (int t = 0; t < kDimsPerThread; ++t) {
    kr[t] = active ? cvt<float>(k[base + t]) : 0.0f;
    vr[t] = active ? cvt<float>(v[base + t]) : 0.0f;
    dk_acc[t] = dv_acc[t] = 0.0f;
  }
  for (int64_t i0 = 0; i0 < a.q_len; i0 += kTileRows) {
    if (a.skip_causal_tiles && i0 + kTileRows - 1 < r.first) continue;  // all queries precede
    __syncthreads();  // the previous tile's row stats are no longer read
    for (int rr = threadIdx.x; rr < kTileRows; rr += blockDim.x) {
      const int64_t i = i0 + rr;
      s_max[rr] = i < a.q_len ? stats[2 * (bh * a.q_len + i)] : 0.0f;
      s_inv_sum[rr] = i < a.q_len ? stats[2 * (bh * a.q_len + i) + 1] : 0.0f;
      s_delta[rr] = i < a.q_len ? delta[bh * a.q_len + i] : 0.0f;
      s_mrow[rr] = i < a.q_len ? a.mask.row(bh * a.q_len + i) : nullptr;
    }
    const int nq = load_tiles<T, D>(sq, q, sdo, dout, r, i0, a.q_len, a.heads);
    for (int ii = 0; ii < nq; ++ii) {
      float s = 0.0f, dp = 0.0f;
#pragma unroll
      for (int t = 0; t < kDimsPerThread; ++t) {
        s += sq[ii][part * kDimsPerThread + t] * kr[t];
        dp += sdo[ii][part * kDimsPerThread + t] * vr[t];
      }
      s = group_sum<R>(s) * a.scale;
      dp = group_sum<R>(dp);
      const bool off = !active || masked(a, s_mrow[ii], i0 + ii, j);  // (no mask read past kv_len)
      // A masked logit is `fill`: its weight is 0 unless the whole row is masked (then uniform).
      const float p = __expf((off ? a.fill : s) - s_max[ii]) * s_inv_sum[ii];
      const float ds = off ? 0.0f : p * (dp - s_delta[ii]);
#pragma unroll
      for (int t = 0; t < kDimsPerThread; ++t) {
        dv_acc[t] += p * sdo[ii][part * kDimsPerThread + t];
        dk_acc[t] += ds * sq[ii][part * kDimsPerThread + t];
      }
    }
  }
  if (!active) return;
#pragma unroll
  for (int t = 0; t < kDimsPerThread; ++t) {
    dk[base + t] = cvt<T>(dk_acc[t] * a.scale);
    dv[base + t] = cvt<T>(dv_acc[t]);
  }
}

KernelArgs kernel_args(const AttentionParams& p) {
  KernelArgs a;
  a.heads = p.shape.heads;
  a.q_len = p.shape.q_len;
  a.kv_len = p.shape.kv_len;
  a.scale = float(p.scale);
  a.fill = float(p.fill);
  a.causal = p.causal;
  a.skip_causal_tiles = p.causal && !p.mask.data;
  a.mask = device_row_mask(p.mask, "dot_product_attention");
  return a;
}

// Calls fn(T{}, std::integral_constant<int, D>{}) for the supported dtype and head dim.
template <typename Fn>
void visit_attention(const AttentionParams& p, Fn&& fn) {
  LOOM_CHECK(fused_attention_supported(p.dtype, p.shape.head_dim), NotImplementedError,
             "dot_product_attention: the fused CUDA kernel takes float32, bfloat16 or float16 "
             "with head_dim 32, 64 or 128, got ", dtype_name(p.dtype), " with head_dim ",
             p.shape.head_dim);
  visit_float_dtype(p.dtype, "dot_product_attention", [&](auto z) {
    using T = decltype(z);
    if constexpr (!std::is_same_v<T, double>) {
      switch (p.shape.head_dim) {
        case 32: return fn(z, std::integral_constant<int, 32>{});
        case 64: return fn(z, std::integral_constant<int, 64>{});
        default: return fn(z, std::integral_constant<int, 128>{});
      }
    }
  });
}

dim3 row_grid(int64_t rows, int64_t batch_heads) {
  LOOM_CHECK(batch_heads <= 65535, ShapeError, "dot_product_attention: batch x heads = ",
             batch_heads, " exceeds the fused kernel's grid limit of 65535");
  return dim3(unsigned((rows + kRowsPerBlock - 1) / kRowsPerBlock), unsigned(batch_heads));
}

}  // namespace

bool fused_attention_supported(DType dtype, int64_t head_dim) {
  return (dtype == DType::F32 || dtype == DType::BF16 || dtype == DType::F16) &&
         (head_dim == 32 || head_dim == 64 || head_dim == 128);
}

void attention_forward(const AttentionParams& p, const void* q, const void* k, const void* v,
                       void* out, float* stats, Stream stream) {
  const AttentionShape& s = p.shape;
  if (s.batch * s.heads * s.q_len == 0) return;
  const KernelArgs a = kernel_args(p);
  visit_attention(p, [&](auto z, auto dim) {
    using T = decltype(z);
    constexpr int D = decltype(dim)::value;
    attention_forward_kernel<T, D><<<row_grid(s.q_len, s.batch * s.heads),
                                     kRowsPerBlock * (D / kDimsPerThread), 0, stream>>>(
        static_cast<const T*>(q), static_cast<const T*>(k), static_cast<const T*>(v),
        static_cast<T*>(out), stats, a);
  });
  LOOM_CUDA_CHECK(cudaGetLastError());
}

void attention_backward(const AttentionParams& p, const void* q, const void* k, const void* v,
                        const void* out, const void* dout, const float* stats, float* delta,
                        void* dq, void* dk, void* dv, Stream stream) {
  const AttentionShape& s = p.shape;
  const KernelArgs a = kernel_args(p);
  visit_attention(p, [&](auto z, auto dim) {
    using T = decltype(z);
    constexpr int D = decltype(dim)::value;
    const int threads = kRowsPerBlock * (D / kDimsPerThread);
    const int64_t rows = s.batch * s.heads * s.q_len;
    if (rows > 0) {
      attention_delta_kernel<T, D><<<blocks_for(rows), 256, 0, stream>>>(
          static_cast<const T*>(out), static_cast<const T*>(dout), delta, rows, s.heads, s.q_len);
      attention_dq_kernel<T, D><<<row_grid(s.q_len, s.batch * s.heads), threads, 0, stream>>>(
          static_cast<const T*>(q), static_cast<const T*>(k), static_cast<const T*>(v),
          static_cast<const T*>(dout), stats, delta, static_cast<T*>(dq), a);
    }
    if (s.batch * s.heads * s.kv_len > 0)
      attention_dkdv_kernel<T, D><<<row_grid(s.kv_len, s.batch * s.heads), threads, 0, stream>>>(
          static_cast<const T*>(q), static_cast<const T*>(k), static_cast<const T*>(v),
          static_cast<const T*>(dout), stats, delta, static_cast<T*>(dk), static_cast<T*>(dv), a);
  });
  LOOM_CUDA_CHECK(cudaGetLastError());
}

}  // namespace loom::cuda
