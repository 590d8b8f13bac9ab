// Column sums finished in the kernel that computes their partials. The gridDim.y blocks of one
// grid column (same blockIdx.x) each write partial sums for their columns; the block that arrives
// last adds all the partials up, in a fixed order, so the result is deterministic whichever block
// that is. A second "finish" kernel would cost a launch and a graph node per reduction (106 a
// ResNet-50 step for BatchNorm alone) for a few microseconds of work.
#pragma once

namespace loom::cuda {

/// Grid columns one launch may have: a wider reduction is launched in slices of columns.
constexpr unsigned kMaxGridColumns = 4096;

namespace {  // each translation unit has its own counters

// One arrival counter per grid column, zero at module load and reset by the last block. The
// kernels using them run on loom's one compute stream per device (runtime.h), one at a time, so
// two launches never share a counter.
__device__ unsigned grid_column_arrivals[kMaxGridColumns];

/// Call in every thread of the block after the block's partials are stored. True in every thread
/// of the block that arrived last among the blocks of its grid column; the other blocks' partials
/// are then visible to it through L2 (read them with __ldcg, not through the non-coherent L1).
__device__ __forceinline__ bool arrived_last_in_grid_column() {
  __shared__ bool last;
  __threadfence();  // this thread's partials are visible before the block is counted
  __syncthreads();
  if (threadIdx.x == 0 && threadIdx.y == 0) {
    const unsigned earlier = atomicAdd(&grid_column_arrivals[blockIdx.x], 1u);
    last = earlier + 1 == gridDim.y;
    if (last) grid_column_arrivals[blockIdx.x] = 0;  // every block has counted: ready for the next launch
  }
  __syncthreads();
  if (last) __threadfence();
  return last;
}

}  // namespace
}  // namespace loom::cuda
