// Best-fit sub-allocation of device memory segments: the policy behind the CUDA caching allocator
// (kernels/cuda/caching_allocator.h), kept free of CUDA so that the CPU test suite covers it.
//
// Memory comes from the driver in segments (2 MiB for requests under 1 MiB, shared by many
// small blocks; the request rounded up to 2 MiB otherwise). A segment serves one pool (a stream,
// or a CUDA graph while it may be replayed). An allocation takes the smallest free block of its
// pool and size class that fits and splits off the rest; a freed block merges with its free
// neighbours, so a segment whose blocks are all free is one block again and can go back to the
// driver. Without splitting, a 26 MiB request handed a cached 30 MiB block held all 30 MiB, and
// a 50 MiB free block could not serve two 25 MiB requests.
//
// Not thread-safe: the caller holds a lock.
#pragma once
#include <cstddef>
#include <cstdint>
#include <functional>
#include <set>
#include <unordered_map>

namespace loom {

class BlockPool {
 public:
  /// Which pool a segment serves (a stream, or a graph's private pool): any unique address.
  using Pool = const void*;

  /// Where segments come from (cudaMalloc/cudaFree for the CUDA allocator).
  class SegmentSource {
   public:
    virtual ~SegmentSource() = default;
    /// A new segment of `bytes`, or nullptr when the device has no room.
    virtual void* map(size_t bytes) = 0;
    virtual void unmap(void* base, size_t bytes) = 0;
  };

  struct Stats {
    size_t allocated = 0;       // bytes of the blocks handed out and not yet freed
    size_t reserved = 0;        // bytes of the segments held
    size_t peak_allocated = 0;  // high-water mark of `allocated` since the last reset
    int64_t segments_mapped = 0;
    int64_t segments_unmapped = 0;
  };

  static constexpr size_t kAlignment = 512;              // every block size is a multiple
  static constexpr size_t kSmallLimit = size_t(1) << 20;  // requests below are small
  static constexpr size_t kSegmentGranule = size_t(2) << 20;

  explicit BlockPool(SegmentSource& source) : source_(source) {}
  /// Forgets the blocks; the segments stay with whoever mapped them (a process at exit).
  ~BlockPool();
  BlockPool(const BlockPool&) = delete;
  BlockPool& operator=(const BlockPool&) = delete;

  /// The bytes a request of `nbytes` occupies: a multiple of kAlignment, at least one.
  static size_t block_size(size_t nbytes);
  /// The segment a request of `nbytes` maps when no free block of its pool fits.
  static size_t segment_size(size_t nbytes);

  /// A block of at least `nbytes` from `pool`'s free blocks, or from a new segment; nullptr when
  /// the source has no room for one (nothing changes then).
  void* allocate(size_t nbytes, Pool pool);
  /// Gives `ptr`'s block back to its pool. Returns the block's size, 0 for a pointer this pool
  /// did not hand out (ignored).
  size_t free(void* ptr);
  /// Unmaps every segment that has no allocated block, except those of pools `keep` returns true
  /// for. Returns the bytes unmapped.
  size_t release_free_segments(const std::function<bool(Pool)>& keep);
  /// Moves every segment of pool `from` (free and allocated blocks) to pool `to`.
  void move_pool(Pool from, Pool to);

  Stats stats() const { return stats_; }
  void reset_peak() { stats_.peak_allocated = stats_.allocated; }

 private:
  struct Block {
    char* ptr;
    size_t size;
    Pool pool;
    bool small;      // of a small-request segment
    bool allocated = false;
    Block* prev = nullptr;  // address-order neighbours in the same segment
    Block* next = nullptr;
    bool whole_segment() const { return prev == nullptr && next == nullptr; }
  };
  struct FreeOrder {  // best fit: by pool, size class, size, then address
    bool operator()(const Block* a, const Block* b) const;
  };

  Block* take_free_block(size_t size, bool small, Pool pool);
  Block* map_segment(size_t size, bool small, Pool pool);
  void split(Block* block, size_t size);
  void absorb_next(Block* block);

  SegmentSource& source_;
  std::set<Block*, FreeOrder> free_;
  std::unordered_map<void*, Block*> allocated_;
  Stats stats_;
};

}  // namespace loom
