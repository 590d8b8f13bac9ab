// Two sums down the columns of an [m, c] matrix in one kernel: BatchNorm's statistics and
// gradient sums, LayerNorm's parameter gradients. A block takes one warp of column groups (V
// columns a thread, 16 bytes; 512 contiguous bytes of a bf16 row) and row lanes over one chunk of
// rows, and writes its partials. The chunks are then added where they are, without a second
// kernel (a launch and a graph node per reduction: 106 a ResNet-50 step for BatchNorm alone):
// the last block of each group of 16 chunks to finish adds the group's partials, and the last of
// those adds the groups'. Two levels, so that no single block reads more than 32 partials per
// column. Every order is fixed, so the sums are deterministic whichever block comes last, and the
// shape alone decides them (not the GPU model).
//
// The chunks are taken from the last to the first (block row 0 sums the last chunk), so that the
// sweep starts on the rows that the kernel before it wrote or read last, which are still in L2:
// a convolution's output for BatchNorm's statistics, the input gradient's rows for LayerNorm's
// parameter gradients. The elementwise pass after the sums sweeps from the first row
// (kernels/cuda/batch_norm.cu), where the sums ended. Which block sums which rows, and in what
// order, is unchanged by this: only when.
#pragma once
#include <algorithm>
#include <cstdint>

namespace loom::cuda {

constexpr int kColumnSumThreads = 256;
constexpr int64_t kMaxChunks = 512, kChunksPerGroup = 16;
constexpr int64_t kMaxChunkGroups = kMaxChunks / kChunksPerGroup;
/// Grid columns one launch may have: a wider reduction is launched in slices of columns.
constexpr unsigned kMaxGridColumns = 1024;

__host__ __device__ inline int64_t chunk_groups(int64_t chunks) { return (chunks + kChunksPerGroup - 1) / kChunksPerGroup; }

namespace {  // each translation unit has its own counters

// Arrival counters of the chunk groups and of the grid columns: zero at module load, and reset by
// the block that arrives last. The kernels using them run on loom's one compute stream per
// device (runtime.h), one at a time, so two launches never share a counter.
__device__ unsigned chunk_group_arrivals[kMaxGridColumns * kMaxChunkGroups];
__device__ unsigned grid_column_arrivals[kMaxGridColumns];

/// Call in every thread of the block after the block's partials are stored. True in every thread
/// of the block that is the last of `blocks` to count itself on `counter`; the others' partials
/// are then visible to it through L2 (read them with __ldcg, not through the non-coherent L1).
__device__ __forceinline__ bool arrived_last(unsigned* counter, unsigned blocks) {
  __shared__ bool last;
  __threadfence();  // this thread's partials are visible before the block is counted
  __syncthreads();
  if (threadIdx.x == 0 && threadIdx.y == 0) {
    last = atomicAdd(counter, 1u) + 1 == blocks;
    if (last) *counter = 0;  // every block has counted: ready for the next launch
  }
  __syncthreads();
  if (last) __threadfence();
  return last;
}

}  // namespace

/// The grid of a column-sum kernel over [m, c], V columns a thread.
struct ColumnSumsGrid {
  dim3 block;
  unsigned column_blocks;  // grid columns in all; launched kMaxGridColumns at a time
  int64_t chunks, chunk_rows;
};

/// Row chunks: enough blocks to fill an H100 (~1024 of 256 threads; late ResNet stages, c = 2048
/// over m = 12544 rows, had 98 with one chunk per 128 rows), at least 32 rows per chunk, and at
/// most kMaxChunks. A function of the shape alone.
inline int64_t column_sum_chunks(int64_t m, int64_t c) {
  constexpr int64_t kTargetBlocks = 1024, kMinChunkRows = 32;
  if (c <= 0) return 1;  // no columns: the kernels return before launching
  const int64_t column_blocks = (c + 255) / 256;  // of 32 lanes x 8 columns
  int64_t chunks = (kTargetBlocks + column_blocks - 1) / column_blocks;
  chunks = std::min({chunks, kMaxChunks, (m + kMinChunkRows - 1) / kMinChunkRows});
  return chunks < 1 ? 1 : chunks;
}

/// Elements of the accumulation type the partials of [m, c] need: [chunks + groups, 2, c].
inline int64_t column_sums_workspace(int64_t m, int64_t c) {
  const int64_t chunks = column_sum_chunks(m, c);
  return (chunks + chunk_groups(chunks)) * 2 * c;
}

inline ColumnSumsGrid column_sums_grid(int64_t m, int64_t c, int V) {
  const int64_t groups = c / V;
  const int bx = int(groups < 32 ? groups : 32);
  const int64_t chunks = column_sum_chunks(m, c);
  return {dim3(unsigned(bx), unsigned(kColumnSumThreads / bx)), unsigned((groups + bx - 1) / bx),
          chunks, (m + chunks - 1) / chunks};
}

/// launch(grid, col_begin) for each launch of at most kMaxGridColumns grid columns: the kernel
/// then covers the columns from col_begin.
template <typename Launch>
void for_each_column_launch(const ColumnSumsGrid& g, int V, Launch&& launch) {
  for (unsigned first = 0; first < g.column_blocks; first += kMaxGridColumns) {
    const dim3 grid(std::min(g.column_blocks - first, kMaxGridColumns), unsigned(g.chunks));
    launch(grid, int64_t(first) * g.block.x * V);
  }
}

/// This thread's first column; the thread has columns only where it is below c.
template <int V>
__device__ __forceinline__ int64_t first_column_of_thread(int64_t col_begin) {
  return col_begin + (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) * V;
}

/// The body of a column-sum kernel. add_row(i, a, b) adds row i's values of the thread's V
/// columns from j0 into a[V], b[V]; finish(a, b) receives their totals over all m rows, in one
/// thread of the last block (only where j0 < c).
template <typename A, int V, typename AddRow, typename Finish>
__device__ __forceinline__ void sum_columns(int64_t m, int64_t c, int64_t j0, int64_t chunk_rows,
                                            A* part, AddRow&& add_row, Finish&& finish) {
  __shared__ A sa[kColumnSumThreads * V];
  __shared__ A sb[kColumnSumThreads * V];
  const bool active = j0 < c;
  A a[V], b[V];
  // The row lanes of the block, added in lane order into lane 0.
  const int cols = int(blockDim.x) * V;
  auto add_lanes = [&] {
#pragma unroll
    for (int v = 0; v < V; ++v) {
      sa[threadIdx.y * cols + threadIdx.x * V + v] = a[v];
      sb[threadIdx.y * cols + threadIdx.x * V + v] = b[v];
    }
    __syncthreads();
    if (threadIdx.y == 0 && active)
      for (unsigned k = 1; k < blockDim.y; ++k)
#pragma unroll
        for (int v = 0; v < V; ++v) {
          a[v] += sa[k * cols + threadIdx.x * V + v];
          b[v] += sb[k * cols + threadIdx.x * V + v];
        }
  };
  // Partials are [*, 2, c]: a's row, then b's.
  auto store = [&](A* dst) {
    if (threadIdx.y == 0 && active)
#pragma unroll
      for (int v = 0; v < V; ++v) {
        dst[j0 + v] = a[v];
        dst[c + j0 + v] = b[v];
      }
  };
  // Partials first, first + 1, ..., first + count - 1 of src: lane y adds y, y + blockDim.y, ...,
  // then the lanes in order.
  auto add_partials = [&](const A* src, int64_t first, int64_t count) {
#pragma unroll
    for (int v = 0; v < V; ++v) a[v] = b[v] = A(0);
    if (active)
      for (int64_t k = first + threadIdx.y; k < first + count; k += blockDim.y)
#pragma unroll
        for (int v = 0; v < V; ++v) {
          a[v] += __ldcg(src + k * 2 * c + j0 + v);
          b[v] += __ldcg(src + k * 2 * c + c + j0 + v);
        }
    add_lanes();
  };

  // This block's chunk of rows: the chunks run from the last (see the top of the file).
  const int64_t chunks = gridDim.y, chunk = chunks - 1 - blockIdx.y;
  const int64_t begin = chunk * chunk_rows;
  const int64_t end = begin + chunk_rows < m ? begin + chunk_rows : m;
#pragma unroll
  for (int v = 0; v < V; ++v) a[v] = b[v] = A(0);
  if (active) {
#pragma unroll 4
    for (int64_t i = begin + threadIdx.y; i < end; i += blockDim.y) add_row(i, a, b);
  }
  add_lanes();
  store(part + chunk * 2 * c);

  // The last block of the chunk's group adds the group's partials.
  const int64_t group = chunk / kChunksPerGroup;
  const int64_t group_first = group * kChunksPerGroup;
  const int64_t group_size = chunks - group_first < kChunksPerGroup ? chunks - group_first : kChunksPerGroup;
  if (!arrived_last(&chunk_group_arrivals[blockIdx.x * kMaxChunkGroups + group], unsigned(group_size)))
    return;
  A* group_part = part + chunks * 2 * c;  // [groups, 2, c] after the chunks' partials
  add_partials(part, group_first, group_size);
  store(group_part + group * 2 * c);

  // The last of those adds the groups'.
  const int64_t groups = chunk_groups(chunks);
  if (!arrived_last(&grid_column_arrivals[blockIdx.x], unsigned(groups))) return;
  add_partials(group_part, 0, groups);
  if (threadIdx.y == 0 && active) finish(a, b);
}

}  // namespace loom::cuda
