#include "kernels/cuda/copy.h"

#include <algorithm>
#include <cstring>
#include <limits>
#include <optional>
#include <type_traits>

#include "core/half.h"
#include "kernels/cuda/device_types.cuh"
#include "kernels/cuda/multi_tensor.cuh"

namespace loom::cuda {
namespace {

template <typename S, typename D>
__global__ void strided_copy_kernel(const S* src, StridedIndex index, D* dst, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    dst[i] = cvt<D>(src[index.offset(i)]);
}

// A copy whose innermost dim is contiguous in src (a slice of a padded gradient, a broadcast
// along the middle dims) as rows of row_len elements, V at a time: the row's place in src is
// worked out once per pack instead of once per element.
template <typename S, typename D, int V>
__global__ void strided_rows_kernel(const S* src, StridedIndex rows, int64_t row_len, D* dst,
                                    int64_t packs) {
  const int64_t packs_per_row = row_len / V;
  for (int64_t p = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; p < packs;
       p += int64_t(gridDim.x) * blockDim.x) {
    const int64_t r = p / packs_per_row, k = p - r * packs_per_row;
    const Pack<S, V> s = load_pack<V>(src + rows.offset(r) + k * V);
    Pack<D, V> d;
#pragma unroll
    for (int v = 0; v < V; ++v) d.v[v] = cvt<D>(s.v[v]);
    store_pack<V>(dst + p * V, d);
  }
}

// The rows of a merged strided index whose innermost dim has stride 1, when every row starts on
// a V-element boundary of an aligned src and holds whole packs; nullopt otherwise.
std::optional<StridedIndex> packed_rows(const StridedIndex& index, const void* src, int V,
                                        size_t src_elem) {
  const int last = index.ndim - 1;
  if (last < 1 || index.strides[last] != 1 || index.shape[last] % V != 0 ||
      reinterpret_cast<uintptr_t>(src) % (src_elem * size_t(V)) != 0)
    return std::nullopt;
  Shape shape, strides;
  for (int d = 0; d < last; ++d) {
    if (index.strides[d] % V != 0) return std::nullopt;
    shape.push_back(index.shape[d]);
    strides.push_back(index.strides[d]);
  }
  return make_strided_index(shape, strides, "strided_copy");
}

// A (batched) transpose moves through shared-memory tiles of kTile x kTile elements, kTileRows
// threads high: a block of 32 x 8 moves a tile in four steps.
constexpr int kTile = 32;
constexpr int kTileRows = 8;
// Blocks loop over the tiles beyond this (about 8 waves of an H100's resident blocks).
constexpr int kMaxTileBlocks = 8192;

// A merged strided copy seen as tiles: the "src-fast" dim is one that src holds with stride 1,
// the "dst-fast" dim is dst's last (dst is dense). Every other dim is a batch dim, decoded once
// per tile into base offsets.
struct TransposeTiles {
  static constexpr int kMaxBatchDims = StridedIndex::kMaxDims - 2;
  int64_t src_fast_size = 0, dst_fast_size = 0;
  int64_t src_stride_of_dst_fast = 0, dst_stride_of_src_fast = 0;
  // Tile counts fit 32 bits (checked on the host), so the per-tile decode divides in 32 bits.
  uint32_t src_fast_tiles = 0, dst_fast_tiles = 0, tiles = 0;
  int batch_ndim = 0;
  uint32_t batch_shape[kMaxBatchDims] = {};
  int64_t batch_src_strides[kMaxBatchDims] = {};
  int64_t batch_dst_strides[kMaxBatchDims] = {};
};

// Each tile is read with lanes along src's stride-1 dim and written with lanes along dst's last
// dim, so both sides are coalesced; the cast happens on the way out.
template <typename S, typename D>
__global__ void __launch_bounds__(kTile * kTileRows)
    transpose_tiles_kernel(const S* src, TransposeTiles t, D* dst) {
  // [dst-fast][src-fast]; the padding column spreads a column's elements over distinct banks.
  __shared__ S tile[kTile][kTile + 1];
  const int lane = threadIdx.x, row = threadIdx.y;
  for (uint32_t i = blockIdx.x; i < t.tiles; i += gridDim.x) {
    uint32_t rest = i;
    const int64_t dst_fast0 = int64_t(rest % t.dst_fast_tiles) * kTile;
    rest /= t.dst_fast_tiles;
    const int64_t src_fast0 = int64_t(rest % t.src_fast_tiles) * kTile;
    rest /= t.src_fast_tiles;
    int64_t src_base = 0, dst_base = 0;
    for (int b = t.batch_ndim - 1; b >= 0; --b) {
      const uint32_t j = rest % t.batch_shape[b];
      rest /= t.batch_shape[b];
      src_base += j * t.batch_src_strides[b];
      dst_base += j * t.batch_dst_strides[b];
    }
    const int64_t src_fast = src_fast0 + lane, dst_fast = dst_fast0 + lane;
    for (int r = row; r < kTile; r += kTileRows)
      if (src_fast < t.src_fast_size && dst_fast0 + r < t.dst_fast_size)
        tile[r][lane] = src[src_base + src_fast + (dst_fast0 + r) * t.src_stride_of_dst_fast];
    __syncthreads();
    for (int r = row; r < kTile; r += kTileRows)
      if (dst_fast < t.dst_fast_size && src_fast0 + r < t.src_fast_size)
        dst[dst_base + (src_fast0 + r) * t.dst_stride_of_src_fast + dst_fast] =
            cvt<D>(tile[lane][r]);
    __syncthreads();  // the next tile overwrites this one
  }
}

// A dense copy or cast, V elements per access (16 bytes of the wider type), then the tail.
template <typename S, typename D, int V>
__global__ void dense_cast_kernel(const S* src, D* dst, int64_t n) {
  const int64_t tid = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  const int64_t stride = int64_t(gridDim.x) * blockDim.x, packs = n / V;
  for (int64_t p = tid; p < packs; p += stride) {
    const Pack<S, V> s = load_pack<V>(src + p * V);
    Pack<D, V> d;
#pragma unroll
    for (int v = 0; v < V; ++v) d.v[v] = cvt<D>(s.v[v]);
    store_pack<V>(dst + p * V, d);
  }
  for (int64_t i = packs * V + tid; i < n; i += stride) dst[i] = cvt<D>(src[i]);
}

struct CastTable {
  int count = 0;
  int64_t start[kMaxCastJobs + 1] = {};  // prefix sums of the jobs' sizes
  const void* src[kMaxCastJobs] = {};
  void* dst[kMaxCastJobs] = {};
};

template <typename S, typename D>
__global__ void cast_many_kernel(const __grid_constant__ CastTable t) {
  for_each_element(t, [&](int l, int64_t i) {
    static_cast<D*>(t.dst[l])[i] = cvt<D>(static_cast<const S*>(t.src[l])[i]);
  });
}

template <typename T>
__global__ void fill_kernel(T* dst, T value, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    dst[i] = value;
}

template <typename T>
__global__ void fill_range_kernel(T* dst, double start, double step, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    dst[i] = cvt<T>(__dadd_rn(start, __dmul_rn(double(i), step)));  // no FMA: as the CPU rounds
}

// `value` as a device element, converted on the host exactly as the CPU's fill converts it
// (the half types: one rounding of the double).
template <typename T>
T host_value(double value) {
  if constexpr (std::is_same_v<T, __nv_bfloat16> || std::is_same_v<T, __half>) {
    using H = std::conditional_t<std::is_same_v<T, __nv_bfloat16>, bfloat16, float16>;
    const H h = convert<H>(value);
    T d;
    static_assert(sizeof(d) == sizeof(h.bits));
    std::memcpy(&d, &h.bits, sizeof(d));
    return d;
  } else {
    return convert<T>(value);
  }
}

// The tiling of a merged index whose src holds a dim other than dst's last with stride 1 (a
// transpose, batched or of a slice); nullopt for any other copy. A side shorter than
// kMinTransposeSide leaves most of a tile's threads idle, and the generic kernel's warps then
// touch few lines anyway, so such copies stay with it.
constexpr int64_t kMinTransposeSide = 8;
std::optional<TransposeTiles> transpose_tiles(const StridedIndex& index) {
  const int last = index.ndim - 1;
  if (last < 1 || index.strides[last] == 1) return std::nullopt;
  int src_fast = -1;
  for (int d = 0; d < last && src_fast < 0; ++d)
    if (index.strides[d] == 1) src_fast = d;
  if (src_fast < 0 || index.shape[src_fast] < kMinTransposeSide ||
      index.shape[last] < kMinTransposeSide)
    return std::nullopt;
  int64_t dst_strides[StridedIndex::kMaxDims];
  int64_t dst_stride = 1;
  for (int d = last; d >= 0; --d) {
    dst_strides[d] = dst_stride;
    dst_stride *= index.shape[d];
  }
  TransposeTiles t;
  t.src_fast_size = index.shape[src_fast];
  t.dst_fast_size = index.shape[last];
  t.src_stride_of_dst_fast = index.strides[last];
  t.dst_stride_of_src_fast = dst_strides[src_fast];
  const int64_t src_fast_tiles = (t.src_fast_size + kTile - 1) / kTile;
  const int64_t dst_fast_tiles = (t.dst_fast_size + kTile - 1) / kTile;
  int64_t tiles = src_fast_tiles * dst_fast_tiles;  // at most the element count: no overflow
  for (int d = 0; d < last; ++d) {
    if (d == src_fast) continue;
    t.batch_shape[t.batch_ndim] = uint32_t(index.shape[d]);
    t.batch_src_strides[t.batch_ndim] = index.strides[d];
    t.batch_dst_strides[t.batch_ndim] = dst_strides[d];
    ++t.batch_ndim;
    tiles *= index.shape[d];
  }
  // Beyond 2^31 tiles (2^41 elements) the 32-bit tile index would not do.
  if (tiles > std::numeric_limits<int32_t>::max()) return std::nullopt;
  t.src_fast_tiles = uint32_t(src_fast_tiles);
  t.dst_fast_tiles = uint32_t(dst_fast_tiles);
  t.tiles = uint32_t(tiles);
  return t;
}

}  // namespace

void strided_copy(const void* src, DType src_dtype, const Shape& shape, const Shape& src_strides,
                  void* dst, DType dst_dtype, Stream stream) {
  int64_t n = shape_numel(shape);
  if (n == 0) return;
  const StridedIndex index = make_strided_index(shape, src_strides, "strided_copy");
  const bool dense = index.ndim <= 1 && (index.ndim == 0 || index.strides[0] == 1);
  // A transpose read element by element strides through src (a warp touches 32 lines); tiles
  // read and write whole lines (ResNet's conv weights between HWIO and cuDNN's KRSC).
  const std::optional<TransposeTiles> tiling = dense ? std::nullopt : transpose_tiles(index);
  visit_device_dtype(src_dtype, [&](auto s) {
    using S = decltype(s);
    visit_device_dtype(dst_dtype, [&](auto d) {
      using D = decltype(d);
      constexpr int V = 16 / int(sizeof(S) > sizeof(D) ? sizeof(S) : sizeof(D));
      const std::optional<StridedIndex> rows =
          dense || !pack_aligned<D, V>(dst) ? std::nullopt : packed_rows(index, src, V, sizeof(S));
      if (dense && pack_aligned<S, V>(src) && pack_aligned<D, V>(dst))
        dense_cast_kernel<S, D, V><<<blocks_for((n + V - 1) / V), 256, 0, stream>>>(
            static_cast<const S*>(src), static_cast<D*>(dst), n);
      else if (rows)
        strided_rows_kernel<S, D, V><<<blocks_for(n / V), 256, 0, stream>>>(
            static_cast<const S*>(src), *rows, index.shape[index.ndim - 1], static_cast<D*>(dst),
            n / V);
      else if (tiling)
        transpose_tiles_kernel<<<int(std::min<uint32_t>(tiling->tiles, kMaxTileBlocks)),
                                 dim3(kTile, kTileRows), 0, stream>>>(
            static_cast<const S*>(src), *tiling, static_cast<D*>(dst));
      else
        strided_copy_kernel<<<blocks_for(n), 256, 0, stream>>>(static_cast<const S*>(src), index,
                                                                static_cast<D*>(dst), n);
    });
  });
  LOOM_CUDA_CHECK(cudaGetLastError());
}

void cast_many(const std::vector<CastJob>& jobs, DType src_dtype, DType dst_dtype, Stream stream) {
  visit_device_dtype(src_dtype, [&](auto s) {
    visit_device_dtype(dst_dtype, [&](auto d) {
      for (size_t first = 0; first < jobs.size(); first += kMaxCastJobs) {
        CastTable t;
        t.count = int(std::min(jobs.size() - first, size_t(kMaxCastJobs)));
        for (int k = 0; k < t.count; ++k) {
          const CastJob& job = jobs[first + size_t(k)];
          t.start[k + 1] = t.start[k] + job.n;
          t.src[k] = job.src;
          t.dst[k] = job.dst;
        }
        if (t.start[t.count] == 0) continue;
        cast_many_kernel<decltype(s), decltype(d)>
            <<<multi_tensor_blocks(t.start[t.count]), kMultiTensorThreads, 0, stream>>>(t);
        LOOM_CUDA_CHECK(cudaGetLastError());
      }
    });
  });
}

void fill(void* dst, DType dtype, int64_t n, double value, Stream stream) {
  if (n == 0) return;
  visit_device_dtype(dtype, [&](auto z) {
    using T = decltype(z);
    const T v = host_value<T>(value);
    fill_kernel<<<blocks_for(n), 256, 0, stream>>>(static_cast<T*>(dst), v, n);
  });
  LOOM_CUDA_CHECK(cudaGetLastError());
}

void fill_range(void* dst, DType dtype, int64_t n, double start, double step, Stream stream) {
  if (n == 0) return;
  visit_device_dtype(dtype, [&](auto z) {
    using T = decltype(z);
    fill_range_kernel<<<blocks_for(n), 256, 0, stream>>>(static_cast<T*>(dst), start, step, n);
  });
  LOOM_CUDA_CHECK(cudaGetLastError());
}

}  // namespace loom::cuda
