// Kernels over many tensors in one launch (the fused optimizers, casts of a whole tree): the
// tensors' pointers go in a table passed by value (__grid_constant__: read in place from the
// kernel parameter space, nothing to upload) with the prefix sums of their sizes, and each block
// takes chunks of consecutive elements of the tensors laid end to end.
#pragma once
#include <cstdint>

namespace loom::cuda {

constexpr int kMultiTensorThreads = 256;
constexpr int64_t kMultiTensorChunk = kMultiTensorThreads * 4;  // elements per block per step

/// Calls fn(tensor, index) for every element of the t.count tensors of table `t` (t.start: the
/// prefix sums of their sizes). A block finds its chunk's first tensor by binary search, the same
/// for all its threads, so the table reads broadcast.
template <typename Table, typename Fn>
__device__ __forceinline__ void for_each_element(const Table& t, Fn&& fn) {
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
      for (int64_t i = pos + threadIdx.x; i < tensor_end; i += blockDim.x) fn(l, i - t.start[l]);
      if (tensor_end > pos) pos = tensor_end;
    }
  }
}

/// Blocks for `total` elements of a multi-tensor launch (at least 1, at most 65535).
inline int multi_tensor_blocks(int64_t total) {
  const int64_t blocks = (total + kMultiTensorChunk - 1) / kMultiTensorChunk;
  return int(blocks < 1 ? 1 : (blocks > 65535 ? 65535 : blocks));
}

}  // namespace loom::cuda
