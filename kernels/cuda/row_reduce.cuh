// Row reductions shared by the row kernels (softmax, cross-entropy, layer norm): a row along the
// last axis is reduced by one warp for rows of up to kWarpRowLimit elements (kWarpRowsPerBlock
// rows per block) and by a kBlockThreads-thread block beyond that.
#pragma once
#include <cuda/std/limits>

#include <algorithm>
#include <cstdint>
#include <type_traits>

namespace loom::cuda {

constexpr int kWarpRowsPerBlock = 4;
constexpr int kBlockThreads = 256;
constexpr int64_t kWarpRowLimit = 1024;

template <typename A>
__device__ __forceinline__ A nan_max(A a, A b) {  // NaN propagates, as jnp.max
  return (a != a || b != b) ? (a != a ? a : b) : (a > b ? a : b);
}
struct SumOp {
  template <typename A>
  __device__ __forceinline__ A operator()(A a, A b) const { return a + b; }
};
struct MaxOp {
  template <typename A>
  __device__ __forceinline__ A operator()(A a, A b) const { return nan_max(a, b); }
};

template <typename A>
__device__ __forceinline__ A neg_inf() { return -::cuda::std::numeric_limits<A>::infinity(); }

/// Reduces v over the G threads of a row (G == 32: the warp; G == kBlockThreads: the block).
template <int G, typename A, typename Op>
__device__ __forceinline__ A group_reduce(A v, Op op, A identity) {
  for (int o = 16; o > 0; o >>= 1) v = op(v, __shfl_xor_sync(0xffffffffu, v, o));
  if constexpr (G > 32) {
    __shared__ A partial[32];
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    __syncthreads();  // earlier readers of `partial` are done
    if (lane == 0) partial[warp] = v;
    __syncthreads();
    v = lane < G / 32 ? partial[lane] : identity;
    for (int o = 16; o > 0; o >>= 1) v = op(v, __shfl_xor_sync(0xffffffffu, v, o));
  }
  return v;
}
template <int G, typename A>
__device__ __forceinline__ A group_sum(A v) {
  return group_reduce<G>(v, SumOp{}, A(0));
}

// Grid-stride over rows; every thread of a row's group runs the same iterations.
#define LOOM_ROW_LOOP(r, rows)                                                  \
  for (int64_t r = int64_t(blockIdx.x) * blockDim.y + threadIdx.y; r < (rows); \
       r += int64_t(gridDim.x) * blockDim.y)

/// launch(group size G as an integral_constant, grid, block) for `rows` rows of n elements.
template <typename Launch>
void launch_rows(int64_t rows, int64_t n, Launch&& launch) {
  if (n <= kWarpRowLimit) {
    int64_t blocks = (rows + kWarpRowsPerBlock - 1) / kWarpRowsPerBlock;
    launch(std::integral_constant<int, 32>{}, dim3(unsigned(std::min<int64_t>(blocks, 1 << 20))),
           dim3(32, kWarpRowsPerBlock));
  } else {
    launch(std::integral_constant<int, kBlockThreads>{},
           dim3(unsigned(std::min<int64_t>(rows, 1 << 20))), dim3(kBlockThreads, 1));
  }
}

}  // namespace loom::cuda
