#include <algorithm>
#include <climits>

#include "kernels/cuda/device_types.cuh"
#include "kernels/cuda/multi_tensor.cuh"
#include "kernels/cuda/optim_update.h"

namespace loom::cuda {
namespace {

// The leaves of one launch, passed by value (__grid_constant__: read in place from the kernel
// parameter space, no copy, nothing to upload).
struct LeafTable {
  int count = 0;
  int64_t start[kMaxFusedLeaves + 1] = {};  // prefix sums of the leaf sizes
  const float* param[kMaxFusedLeaves] = {};
  const float* grad[kMaxFusedLeaves] = {};
  const float* mu[kMaxFusedLeaves] = {};
  const float* nu[kMaxFusedLeaves] = {};
  float* out[kMaxFusedLeaves] = {};
  float* new_mu[kMaxFusedLeaves] = {};
  float* new_nu[kMaxFusedLeaves] = {};
  float weight_decay[kMaxFusedLeaves] = {};
  bool packed[kMaxFusedLeaves] = {};  // every pointer of the leaf 16-byte aligned
};

constexpr int kPack = 4;  // floats per 16-byte access

__device__ __forceinline__ int32_t incremented(int32_t c) { return c < INT_MAX ? c + 1 : c; }

__global__ void adam_kernel(const __grid_constant__ LeafTable t, AdamConfig c, const int32_t* count,
                            int32_t* new_count, const float* lr, float lr_value, bool write_count) {
  __shared__ float sh[4];
  if (threadIdx.x == 0) {
    const int32_t step = incremented(*count);
    sh[0] = __fsub_rn(1.0f, powf(c.b1, float(step)));
    sh[1] = __fsub_rn(1.0f, powf(c.b2, float(step)));
    sh[2] = __fsub_rn(1.0f, powf(c.b1, float(incremented(step))));
    sh[3] = -(lr ? *lr : lr_value);
    if (write_count && blockIdx.x == 0) *new_count = step;
  }
  __syncthreads();
  const float bc1 = sh[0], bc2 = sh[1], bc1_next = sh[2], neg_lr = sh[3];
  for_each_pack<kPack>(t, [&](int l) { return t.packed[l]; }, [&](int l, int64_t i, auto width) {
    constexpr int W = decltype(width)::value;
    const Pack<float, W> g = load_pack<W>(t.grad[l] + i), mu = load_pack<W>(t.mu[l] + i),
                         nu = load_pack<W>(t.nu[l] + i);
    // params are gathered only when applied or decayed: t.param is null otherwise.
    const bool decay = c.weight_decay && t.weight_decay[l] != 0.0f;
    Pack<float, W> p{}, out, m, v;
    if (decay || c.apply) p = load_pack<W>(t.param[l] + i);
#pragma unroll
    for (int w = 0; w < W; ++w) {
      m.v[w] = __fadd_rn(__fmul_rn(g.v[w], c.one_minus_b1), __fmul_rn(mu.v[w], c.b1));
      v.v[w] = __fadd_rn(__fmul_rn(__fmul_rn(g.v[w], g.v[w]), c.one_minus_b2),
                         __fmul_rn(nu.v[w], c.b2));
      const float m_hat =
          c.nesterov ? __fadd_rn(__fmul_rn(c.b1, __fdiv_rn(m.v[w], bc1_next)),
                                 __fmul_rn(c.one_minus_b1, __fdiv_rn(g.v[w], bc1)))
                     : __fdiv_rn(m.v[w], bc1);
      const float denom =
          __fadd_rn(__fsqrt_rn(__fadd_rn(__fdiv_rn(v.v[w], bc2), c.eps_root)), c.eps);
      float u = __fdiv_rn(m_hat, denom);
      if (decay) u = __fadd_rn(u, __fmul_rn(t.weight_decay[l], p.v[w]));
      u = __fmul_rn(u, neg_lr);
      out.v[w] = c.apply ? __fadd_rn(p.v[w], u) : u;
    }
    store_pack<W>(t.out[l] + i, out);
    store_pack<W>(t.new_mu[l] + i, m);
    store_pack<W>(t.new_nu[l] + i, v);
  });
}

__global__ void sgd_kernel(const __grid_constant__ LeafTable t, SgdConfig c, const float* lr,
                           float lr_value) {
  __shared__ float neg_lr_shared;
  if (threadIdx.x == 0) neg_lr_shared = -(lr ? *lr : lr_value);
  __syncthreads();
  const float neg_lr = neg_lr_shared;
  for_each_pack<kPack>(t, [&](int l) { return t.packed[l]; }, [&](int l, int64_t i, auto width) {
    constexpr int W = decltype(width)::value;
    const Pack<float, W> g = load_pack<W>(t.grad[l] + i);
    Pack<float, W> mu{}, p{}, trace, out;
    if (c.has_momentum) mu = load_pack<W>(t.mu[l] + i);
    if (c.apply) p = load_pack<W>(t.param[l] + i);
#pragma unroll
    for (int w = 0; w < W; ++w) {
      float u = g.v[w];
      if (c.has_momentum) {
        trace.v[w] = __fadd_rn(g.v[w], __fmul_rn(mu.v[w], c.momentum));
        u = c.nesterov ? __fadd_rn(g.v[w], __fmul_rn(trace.v[w], c.momentum)) : trace.v[w];
      }
      u = __fmul_rn(u, neg_lr);
      out.v[w] = c.apply ? __fadd_rn(p.v[w], u) : u;
    }
    if (c.has_momentum) store_pack<W>(t.new_mu[l] + i, trace);
    store_pack<W>(t.out[l] + i, out);
  });
}


// Runs launch(table) once per group of at most kMaxFusedLeaves leaves (the first group first).
template <typename Launch>
void for_each_group(const std::vector<OptimLeaf>& leaves, Launch&& launch) {
  size_t first = 0;
  do {
    LeafTable t;
    size_t n = std::min(leaves.size() - first, size_t(kMaxFusedLeaves));
    t.count = int(n);
    for (size_t k = 0; k < n; ++k) {
      const OptimLeaf& leaf = leaves[first + k];
      t.start[k + 1] = t.start[k] + leaf.n;
      t.param[k] = leaf.param;
      t.grad[k] = leaf.grad;
      t.mu[k] = leaf.mu;
      t.nu[k] = leaf.nu;
      t.out[k] = leaf.out;
      t.new_mu[k] = leaf.new_mu;
      t.new_nu[k] = leaf.new_nu;
      t.weight_decay[k] = leaf.weight_decay;
      t.packed[k] = true;
      for (const void* p : {static_cast<const void*>(leaf.param), static_cast<const void*>(leaf.grad),
                            static_cast<const void*>(leaf.mu), static_cast<const void*>(leaf.nu),
                            static_cast<const void*>(leaf.out), static_cast<const void*>(leaf.new_mu),
                            static_cast<const void*>(leaf.new_nu)})
        t.packed[k] = t.packed[k] && pack_aligned<float, kPack>(p);
    }
    launch(t, multi_tensor_blocks(t.start[n]), first == 0);
    first += n;
  } while (first < leaves.size());
}

}  // namespace

void fused_adam(const std::vector<OptimLeaf>& leaves, const AdamConfig& config,
                const OptimScalars& s, Stream stream) {
  LOOM_INTERNAL_ASSERT(s.count && s.new_count);
  for_each_group(leaves, [&](const LeafTable& t, int blocks, bool first) {
    adam_kernel<<<blocks, kMultiTensorThreads, 0, stream>>>(t, config, s.count, s.new_count, s.lr, s.lr_value,
                                                  first);
    LOOM_CUDA_CHECK(cudaGetLastError());
  });
}

void fused_sgd(const std::vector<OptimLeaf>& leaves, const SgdConfig& config,
               const OptimScalars& s, Stream stream) {
  if (leaves.empty()) return;
  for_each_group(leaves, [&](const LeafTable& t, int blocks, bool) {
    sgd_kernel<<<blocks, kMultiTensorThreads, 0, stream>>>(t, config, s.lr, s.lr_value);
    LOOM_CUDA_CHECK(cudaGetLastError());
  });
}

}  // namespace loom::cuda
