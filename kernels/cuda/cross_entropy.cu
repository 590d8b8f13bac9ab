// Softmax cross-entropy with integer labels, one row per warp or block (row_reduce.cuh). The
// forward reads each row once: every thread keeps a running max and the sum of exp(x - max),
// rescaled when the max grows (the online softmax, a pack of logits at a time), and the threads'
// pairs are merged. The
// backward recomputes the softmax from the saved log-sum-exp, or, where the forward already
// wrote the gradient for the upstream gradient a mean over the rows gives, rewrites only the
// rows whose upstream gradient is something else. Rows are read in 16-byte packs
// from their first aligned element (a vocabulary of 50257 leaves most rows misaligned): one
// half element per access kept too few bytes in flight (GPT-2's forward ran at 37% of the copy
// bandwidth, the backward at 50%; H100, docs/PERF.md).
#include <cuda/std/limits>

#include <cstdint>

#include "kernels/cuda/cross_entropy.h"
#include "kernels/cuda/device_types.cuh"
#include "kernels/cuda/row_reduce.cuh"

namespace loom::cuda {
namespace {

/// Adds logit v to a running (max m, sum s of exp(x - m)). A NaN or +inf logit makes s NaN (the
/// row's log-sum-exp is then NaN, or +inf where m is +inf: cross_entropy_kernel); -inf logits add
/// nothing.
template <typename A>
__device__ __forceinline__ void add_logit(A& m, A& s, A v) {
  if (!(v < ::cuda::std::numeric_limits<A>::infinity())) {
    m = nan_max(m, v);
    s = ::cuda::std::numeric_limits<A>::quiet_NaN();
  } else if (v > m) {
    s = s * exp(m - v) + A(1);
    m = v;
  } else if (v > neg_inf<A>()) {
    s += exp(v - m);
  }
}

/// Adds a pack of V logits at once, the same update as V calls of add_logit: the pack's max first
/// (one rescale of s at most), then V independent exps, where one logit at a time made a chain
/// of compare, branch and exp per element.
template <typename A, int V>
__device__ __forceinline__ void add_pack(A& m, A& s, const A (&v)[V]) {
  A pm = v[0];
#pragma unroll
  for (int k = 1; k < V; ++k) pm = nan_max(pm, v[k]);
  if (!(pm < ::cuda::std::numeric_limits<A>::infinity())) {  // a NaN or +inf logit
    m = nan_max(m, pm);
    s = ::cuda::std::numeric_limits<A>::quiet_NaN();
    return;
  }
  if (pm > m) {  // (s == 0 while m is -inf: 0 * exp(-inf) stays 0)
    s *= exp(m - pm);
    m = pm;
  }
  if (m > neg_inf<A>()) {  // else every logit so far is -inf: they add nothing
#pragma unroll
    for (int k = 0; k < V; ++k) s += exp(v[k] - m);
  }
}

/// Merges (m2, s2) into (m, s); an empty pair (s == 0) adds nothing (and no exp(-inf + inf)).
template <typename A>
__device__ __forceinline__ void merge(A& m, A& s, A m2, A s2) {
  const A mx = nan_max(m, m2);
  const A a = s == A(0) ? A(0) : s * exp(m - mx);
  const A b = s2 == A(0) ? A(0) : s2 * exp(m2 - mx);
  m = mx;
  s = a + b;
}

/// Merges the pairs of the G threads of a row; every thread gets the result.
template <int G, typename A>
__device__ __forceinline__ void group_merge(A& m, A& s) {
  for (int o = 16; o > 0; o >>= 1)
    merge(m, s, __shfl_xor_sync(0xffffffffu, m, o), __shfl_xor_sync(0xffffffffu, s, o));
  if constexpr (G > 32) {
    __shared__ A pm[32], ps[32];
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    __syncthreads();  // earlier readers of pm/ps are done
    if (lane == 0) pm[warp] = m, ps[warp] = s;
    __syncthreads();
    m = lane < G / 32 ? pm[lane] : neg_inf<A>();
    s = lane < G / 32 ? ps[lane] : A(0);
    for (int o = 16; o > 0; o >>= 1)
      merge(m, s, __shfl_xor_sync(0xffffffffu, m, o), __shfl_xor_sync(0xffffffffu, s, o));
  }
}

/// The label as a column index, or -1 when out of range (negative labels count from the end).
template <typename L>
__device__ __forceinline__ int64_t column_of(L label, int64_t n) {
  int64_t l = int64_t(label);
  if (l < 0) l += n;
  return l >= 0 && l < n ? l : -1;
}

/// Elements of row before its first V-aligned one (V elements of T in 16 bytes), at most n.
template <int V, typename T>
__device__ __forceinline__ int64_t unaligned_head(const T* row, int64_t n) {
  const int64_t off = int64_t(reinterpret_cast<uintptr_t>(row) / sizeof(T) % V);
  const int64_t head = off == 0 ? 0 : V - off;
  return head < n ? head : n;
}

/// Calls f(j) for this thread's share of the columns [0, n) of a G-thread row group that are
/// outside the V-aligned packs: the head before them and the tail after them.
template <int G, typename F>
__device__ __forceinline__ void for_edges(int64_t head, int64_t packed_end, int64_t n, F&& f) {
  for (int64_t j = threadIdx.x; j < head; j += G) f(j);
  for (int64_t j = packed_end + threadIdx.x; j < n; j += G) f(j);
}

__device__ __forceinline__ float fma_rn(float a, float b, float c) { return __fmaf_rn(a, b, c); }
__device__ __forceinline__ double fma_rn(double a, double b, double c) { return __fma_rn(a, b, c); }

/// Writes row r's gradient gr * (softmax - onehot(c)) from the row's log-sum-exp l, this
/// thread's share of it, and zeroes the row's padding past n (Storage::has_zero_row_padding).
/// dx's rows have the logits' pitch and alignment (the host checks), so one head serves both.
/// The forward and the backward both write rows through this, with an explicit FMA (not one the
/// compiler may or may not contract in each kernel), so that they agree bit for bit.
template <typename T, int G, int V, typename A>
__device__ __forceinline__ void write_row_gradient(const T* row, T* out, int64_t n, int64_t ld,
                                                   A gr, A l, int64_t c) {
  auto grad = [&](int64_t j, T x) {
    return cvt<T>(fma_rn(gr, exp(cvt<A>(x) - l), j == c ? -gr : A(0)));
  };
  const int64_t head = unaligned_head<V>(row, n), packs = (n - head) / V;
  for (int64_t p = threadIdx.x; p < packs; p += G) {
    const int64_t j0 = head + p * V;
    const Pack<T, V> x = load_pack<V>(row + j0);
    Pack<T, V> y;
#pragma unroll
    for (int k = 0; k < V; ++k) y.v[k] = grad(j0 + k, x.v[k]);
    store_pack<V>(out + j0, y);
  }
  for_edges<G>(head, head + packs * V, n, [&](int64_t j) { out[j] = grad(j, row[j]); });
  for (int64_t j = n + threadIdx.x; j < ld; j += G) out[j] = cvt<T>(A(0));
}

// T: logits; O: loss and its gradient (T, or float for half logits); V: elements per pack.
// With dx, the gradient is also written for an upstream gradient of `assumed` on every row (the
// backward then rewrites only the rows whose gradient differs: cross_entropy_int_backward).
template <typename T, typename O, typename L, int G, int V>
__global__ void cross_entropy_kernel(const T* logits, const L* labels, O* loss, acc_t<T>* lse,
                                     int64_t rows, int64_t n, int64_t ld, T* dx,
                                     acc_t<T> assumed) {
  using A = acc_t<T>;
  LOOM_ROW_LOOP(r, rows) {
    const T* row = logits + r * ld;
    const int64_t head = unaligned_head<V>(row, n), packs = (n - head) / V;
    A m = neg_inf<A>(), s = 0;
    for (int64_t p = threadIdx.x; p < packs; p += G) {
      const Pack<T, V> x = load_pack<V>(row + head + p * V);
      A v[V];
#pragma unroll
      for (int k = 0; k < V; ++k) v[k] = cvt<A>(x.v[k]);
      add_pack(m, s, v);
    }
    for_edges<G>(head, head + packs * V, n, [&](int64_t j) { add_logit(m, s, cvt<A>(row[j])); });
    group_merge<G>(m, s);
    // A +inf logit (m is +inf, s NaN) makes the log-sum-exp +inf, as jax.nn.logsumexp's in
    // optax's loss: the loss is +inf (NaN at a +inf label), the gradient 0 but NaN at the +inf.
    const A l = m == ::cuda::std::numeric_limits<A>::infinity() ? m : m + ::log(s);
    const int64_t c = column_of(labels[r], n);
    if (threadIdx.x == 0) {
      lse[r] = l;
      loss[r] = cvt<O>(c < 0 ? ::cuda::std::numeric_limits<A>::quiet_NaN() : l - cvt<A>(row[c]));
    }
    // The row was just read: its second reading comes from L2.
    if (dx) write_row_gradient<T, G, V>(row, dx + r * ld, n, ld, assumed, l, c);
  }
}

// With `written` (dx already holds the gradient for an upstream gradient of `assumed`), only
// the rows whose upstream gradient is not exactly that are written.
template <typename T, typename O, typename L, int G, int V>
__global__ void cross_entropy_backward_kernel(const T* logits, const L* labels,
                                              const acc_t<T>* lse, const O* g, T* dx,
                                              int64_t rows, int64_t n, int64_t ld, bool written,
                                              acc_t<T> assumed) {
  using A = acc_t<T>;
  LOOM_ROW_LOOP(r, rows) {
    const A gr = cvt<A>(g[r]);
    if (written && gr == assumed) continue;
    write_row_gradient<T, G, V>(logits + r * ld, dx + r * ld, n, ld, gr, lse[r],
                                column_of(labels[r], n));
  }
}

constexpr const char* kOp = "softmax_cross_entropy_with_integer_labels";

template <typename Fn>
void visit_label_dtype(DType t, Fn&& fn) {
  switch (t) {
    case DType::I32: return fn(int32_t{});
    case DType::I64: return fn(int64_t{});
    case DType::U8: return fn(uint8_t{});
    case DType::U32: return fn(uint32_t{});
    default: LOOM_THROW(DTypeError, kOp, ": labels must be integers, got ", dtype_name(t));
  }
}

/// launch(T{}, O{}, L{}, G, grid, block): logits T, loss and its gradient O, labels L, rows of
/// n reduced by groups of G threads.
template <typename Launch>
void launch_typed_rows(DType dtype, DType loss_dtype, DType label_dtype, int64_t rows, int64_t n,
                       Launch&& launch) {
  visit_in_out(dtype, loss_dtype, kOp, [&](auto t, auto o) {
    visit_label_dtype(label_dtype, [&](auto l) {
      launch_rows(rows, n, [&](auto g, dim3 grid, dim3 block) { launch(t, o, l, g, grid, block); });
    });
  });
  LOOM_CUDA_CHECK(cudaGetLastError());
}

bool same_alignment(const void* a, const void* b) {
  return (reinterpret_cast<uintptr_t>(a) - reinterpret_cast<uintptr_t>(b)) % 16 == 0;
}

}  // namespace

bool cross_entropy_can_write_gradient(const void* logits, const void* dx) {
  return same_alignment(logits, dx);
}

void cross_entropy_int(const void* logits, DType dtype, const void* labels, DType label_dtype,
                       void* loss, DType loss_dtype, void* lse, int64_t rows, int64_t n,
                       int64_t ld, Stream stream, void* dx, double assumed_grad,
                       unsigned max_row_blocks) {
  if (rows == 0) return;
  LOOM_CHECK(!dx || same_alignment(logits, dx), ValueError, kOp,
             ": the gradient written with the loss must share the logits' 16-byte alignment");
  launch_typed_rows(dtype, loss_dtype, label_dtype, rows, n, [&](auto t, auto o, auto l, auto g,
                                                                 dim3 grid, dim3 block) {
    using T = decltype(t);
    using O = decltype(o);
    using L = decltype(l);
    if (max_row_blocks > 0 && grid.x > max_row_blocks) grid.x = max_row_blocks;  // rows loop
    cross_entropy_kernel<T, O, L, decltype(g)::value, kPack16<T>><<<grid, block, 0, stream>>>(
        static_cast<const T*>(logits), static_cast<const L*>(labels), static_cast<O*>(loss),
        static_cast<acc_t<T>*>(lse), rows, n, ld, static_cast<T*>(dx), acc_t<T>(assumed_grad));
  });
}

void cross_entropy_int_backward(const void* logits, DType dtype, const void* labels,
                                DType label_dtype, const void* lse, const void* grad,
                                DType grad_dtype, void* dx, int64_t rows, int64_t n,
                                int64_t ld, Stream stream, std::optional<double> written_for) {
  if (rows * n == 0) return;
  launch_typed_rows(dtype, grad_dtype, label_dtype, rows, n, [&](auto t, auto o, auto l, auto g,
                                                                 dim3 grid, dim3 block) {
    using T = decltype(t);
    using O = decltype(o);
    using L = decltype(l);
    auto run = [&](auto v) {
      cross_entropy_backward_kernel<T, O, L, decltype(g)::value, decltype(v)::value>
          <<<grid, block, 0, stream>>>(static_cast<const T*>(logits), static_cast<const L*>(labels),
                                       static_cast<const acc_t<T>*>(lse),
                                       static_cast<const O*>(grad), static_cast<T*>(dx), rows, n,
                                       ld, written_for.has_value(),
                                       acc_t<T>(written_for.value_or(0.0)));
    };
    if (same_alignment(logits, dx)) run(std::integral_constant<int, kPack16<T>>{});
    else run(std::integral_constant<int, 1>{});
  });
}

}  // namespace loom::cuda
