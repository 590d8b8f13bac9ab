// Kernels over many tensors in one launch (the fused optimizers, casts of a whole tree): the
// tensors' pointers go in a table passed by value (__grid_constant__: read in place from the
// kernel parameter space, nothing to upload) with the prefix sums of their sizes, and each block
// takes chunks of consecutive elements of the tensors laid end to end.
#pragma once
#include <cstdint>
#include <type_traits>

namespace loom::cuda {

constexpr int kMultiTensorThreads = 256;
constexpr int64_t kMultiTensorChunk = kMultiTensorThreads * 4;  // elements per block per step

/// Visits every element of the t.count tensors of table `t` (t.start: the prefix sums of their
/// sizes), V at a time where it can: for a tensor that `aligned(l)` says may be accessed V
/// elements at once from element 0, fn(l, i, std::integral_constant<int, V>{}) for every pack
/// [i, i + V) with i a multiple of V inside the chunk; the other elements (all of an unaligned
/// tensor's, and the ends of a chunk's part of an aligned one) as
/// fn(l, i, std::integral_constant<int, 1>{}). A block finds its chunk's first tensor by binary
/// search, the same for all its threads, so the table reads broadcast. Wider accesses move more
/// bytes per memory instruction: scalar float accesses left the fused AdamW at 75% of the
/// device's copy bandwidth.
template <int V, typename Table, typename Aligned, typename Fn>
__device__ __forceinline__ void for_each_pack(const Table& t, Aligned&& aligned, Fn&& fn) {
  const std::integral_constant<int, 1> one;
  const std::integral_constant<int, V> wide;
  const int64_t total = t.start[t.count];
  for (int64_t base = blockIdx.x * kMultiTensorChunk; base < total;
       base += int64_t(gridDim.x) * kMultiTensorChunk) {
    const int64_t end = base + kMultiTensorChunk < total ? base + kMultiTensorChunk : total;
    int lo = 0, hi = t.count - 1;
    while (lo < hi) {  // largest tensor whose start <= base
      int mid = (lo + hi + 1) / 2;
      if (t.start[mid] <= base) lo = mid;
      else hi = mid - 1;
    }
    int64_t pos = base;
    for (int l = lo; l < t.count && pos < end; ++l) {
      const int64_t tensor_end = t.start[l + 1] < end ? t.start[l + 1] : end;
      if (tensor_end <= pos) continue;
      // This chunk's part of tensor l: [a, b) in the tensor's own indices, packs in [p0, p1).
      const int64_t a = pos - t.start[l], b = tensor_end - t.start[l];
      int64_t p0 = a, p1 = a;
      if (aligned(l)) {
        const int64_t up = (a + V - 1) / V * V, down = b / V * V;
        p0 = up < b ? up : b;
        p1 = down > p0 ? down : p0;
      }
      for (int64_t i = a + threadIdx.x; i < p0; i += blockDim.x) fn(l, i, one);
      for (int64_t i = p0 + int64_t(threadIdx.x) * V; i < p1; i += int64_t(blockDim.x) * V)
        fn(l, i, wide);
      for (int64_t i = p1 + threadIdx.x; i < b; i += blockDim.x) fn(l, i, one);
      pos = tensor_end;
    }
  }
}

/// fn(tensor, index) for every element of the tensors of table `t`, one at a time.
template <typename Table, typename Fn>
__device__ __forceinline__ void for_each_element(const Table& t, Fn&& fn) {
  for_each_pack<1>(t, [](int) { return false; }, [&](int l, int64_t i, auto) { fn(l, i); });
}

/// Blocks for `total` elements of a multi-tensor launch (at least 1, at most 65535).
inline int multi_tensor_blocks(int64_t total) {
  const int64_t blocks = (total + kMultiTensorChunk - 1) / kMultiTensorChunk;
  return int(blocks < 1 ? 1 : (blocks > 65535 ? 65535 : blocks));
}

}  // namespace loom::cuda
