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
};

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
  for_each_element(t, [&](int l, int64_t i) {
    const float g = t.grad[l][i];
    const float m = __fadd_rn(__fmul_rn(g, c.one_minus_b1), __fmul_rn(t.mu[l][i], c.b1));
    const float v = __fadd_rn(__fmul_rn(__fmul_rn(g, g), c.one_minus_b2), __fmul_rn(t.nu[l][i], c.b2));
    const float m_hat =
        c.nesterov ? __fadd_rn(__fmul_rn(c.b1, __fdiv_rn(m, bc1_next)),
                               __fmul_rn(c.one_minus_b1, __fdiv_rn(g, bc1)))
                   : __fdiv_rn(m, bc1);
    const float denom = __fadd_rn(__fsqrt_rn(__fadd_rn(__fdiv_rn(v, bc2), c.eps_root)), c.eps);
    float u = __fdiv_rn(m_hat, denom);
    // params are gathered only when applied or decayed: t.param is null otherwise.
    if (c.weight_decay && t.weight_decay[l] != 0.0f)
      u = __fadd_rn(u, __fmul_rn(t.weight_decay[l], t.param[l][i]));
    u = __fmul_rn(u, neg_lr);
    t.out[l][i] = c.apply ? __fadd_rn(t.param[l][i], u) : u;
    t.new_mu[l][i] = m;
    t.new_nu[l][i] = v;
  });
}

__global__ void sgd_kernel(const __grid_constant__ LeafTable t, SgdConfig c, const float* lr,
                           float lr_value) {
  __shared__ float neg_lr_shared;
  if (threadIdx.x == 0) neg_lr_shared = -(lr ? *lr : lr_value);
  __syncthreads();
  const float neg_lr = neg_lr_shared;
  for_each_element(t, [&](int l, int64_t i) {
    const float g = t.grad[l][i];
    float u = g;
    if (c.has_momentum) {
      const float trace = __fadd_rn(g, __fmul_rn(t.mu[l][i], c.momentum));
      t.new_mu[l][i] = trace;
      u = c.nesterov ? __fadd_rn(g, __fmul_rn(trace, c.momentum)) : trace;
    }
    u = __fmul_rn(u, neg_lr);
    t.out[l][i] = c.apply ? __fadd_rn(t.param[l][i], u) : u;
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
