// The CUDA caching allocator's policy (core/block_pool.h) on a fake address space: rounding,
// splitting, merging, pools, releasing segments, running out of room, and a randomized run
// checked against a model of what must hold (no overlap, exact statistics, nothing leaked).
#include "core/block_pool.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <iterator>
#include <map>
#include <random>
#include <vector>

namespace loom {
namespace {

constexpr size_t kKiB = size_t(1) << 10;
constexpr size_t kMiB = size_t(1) << 20;

// Hands out addresses from a counter (never dereferenced), 1 GiB apart from each other's ends
// so that a block straying out of its segment would be caught by the overlap checks.
class FakeSegments : public BlockPool::SegmentSource {
 public:
  explicit FakeSegments(size_t budget = SIZE_MAX) : budget_(budget) {}
  void* map(size_t bytes) override {
    if (bytes > budget_ - in_use_) return nullptr;
    uintptr_t base = next_;
    next_ += bytes + (size_t(1) << 30);
    mapped_[base] = bytes;
    in_use_ += bytes;
    return reinterpret_cast<void*>(base);
  }
  void unmap(void* base, size_t bytes) override {
    auto it = mapped_.find(reinterpret_cast<uintptr_t>(base));
    ASSERT_NE(it, mapped_.end()) << "unmapping an address that is not a segment";
    EXPECT_EQ(it->second, bytes) << "unmapping a segment with the wrong size";
    in_use_ -= it->second;
    mapped_.erase(it);
  }
  const std::map<uintptr_t, size_t>& mapped() const { return mapped_; }
  size_t in_use() const { return in_use_; }

 private:
  size_t budget_;
  size_t in_use_ = 0;
  uintptr_t next_ = uintptr_t(1) << 32;
  std::map<uintptr_t, size_t> mapped_;
};

const int kStream = 1, kOtherStream = 2, kGraph = 3;
const BlockPool::Pool stream = &kStream;
const BlockPool::Pool other_stream = &kOtherStream;
const BlockPool::Pool graph = &kGraph;
bool keep_none(BlockPool::Pool) { return false; }

uintptr_t addr(void* p) { return reinterpret_cast<uintptr_t>(p); }

TEST(BlockPool, SizesRoundTo512BytesAndSegmentsTo2MiB) {
  EXPECT_EQ(BlockPool::block_size(0), 512u);
  EXPECT_EQ(BlockPool::block_size(1), 512u);
  EXPECT_EQ(BlockPool::block_size(1000), 1024u);
  EXPECT_EQ(BlockPool::block_size(kMiB), kMiB);
  EXPECT_EQ(BlockPool::segment_size(100), 2 * kMiB);   // small requests share 2 MiB segments
  EXPECT_EQ(BlockPool::segment_size(kMiB - 1), 2 * kMiB);
  EXPECT_EQ(BlockPool::segment_size(kMiB), 2 * kMiB);
  EXPECT_EQ(BlockPool::segment_size(2 * kMiB + 1), 4 * kMiB);
  EXPECT_EQ(BlockPool::segment_size(25 * kMiB), 26 * kMiB);
}

TEST(BlockPool, LargeRequestMapsItsOwnSegmentAndCountsItsBlock) {
  FakeSegments segments;
  BlockPool pool(segments);
  void* a = pool.allocate(25 * kMiB, stream);
  ASSERT_NE(a, nullptr);
  BlockPool::Stats s = pool.stats();
  EXPECT_EQ(s.allocated, 25 * kMiB);  // the segment's 1 MiB tail is split off, not counted
  EXPECT_EQ(s.reserved, 26 * kMiB);
  EXPECT_EQ(s.segments_mapped, 1);
  EXPECT_EQ(pool.free(a), 25 * kMiB);
  EXPECT_EQ(pool.stats().allocated, 0u);
  EXPECT_EQ(pool.stats().reserved, 26 * kMiB);  // cached
  EXPECT_EQ(pool.stats().peak_allocated, 25 * kMiB);
}

TEST(BlockPool, ShortTailOfALargeBlockStaysWithIt) {
  FakeSegments segments;
  BlockPool pool(segments);
  void* a = pool.allocate(3 * kMiB + 512 * kKiB, stream);  // 4 MiB segment, 512 KiB tail
  EXPECT_EQ(pool.stats().allocated, 4 * kMiB);  // a tail no large request could use
  pool.free(a);
  void* b = pool.allocate(3 * kMiB, stream);  // the same segment; a 1 MiB tail is split off
  EXPECT_EQ(b, a);
  EXPECT_EQ(pool.stats().allocated, 3 * kMiB);
  EXPECT_EQ(pool.stats().segments_mapped, 1);
}

TEST(BlockPool, FreedBlockIsSplitForSmallerRequestsAndMergedBack) {
  FakeSegments segments;
  BlockPool pool(segments);
  void* big = pool.allocate(50 * kMiB, stream);
  pool.free(big);
  // Two 25 MiB requests fit in the freed 50 MiB: no new segment.
  void* a = pool.allocate(25 * kMiB, stream);
  void* b = pool.allocate(25 * kMiB, stream);
  EXPECT_EQ(a, big);
  EXPECT_EQ(addr(b), addr(big) + 25 * kMiB);
  EXPECT_EQ(pool.stats().segments_mapped, 1);
  EXPECT_EQ(pool.stats().allocated, 50 * kMiB);
  // Freed in either order, the halves merge: the whole 50 MiB serves one request again.
  pool.free(b);
  pool.free(a);
  void* c = pool.allocate(50 * kMiB, stream);
  EXPECT_EQ(c, big);
  EXPECT_EQ(pool.stats().segments_mapped, 1);
  pool.free(c);
  EXPECT_EQ(pool.release_free_segments(keep_none), 50 * kMiB);
  EXPECT_TRUE(segments.mapped().empty());
}

TEST(BlockPool, BestFitTakesTheSmallestFreeBlockThatFits) {
  FakeSegments segments;
  BlockPool pool(segments);
  void* a = pool.allocate(40 * kMiB, stream);
  void* b = pool.allocate(10 * kMiB, stream);
  void* c = pool.allocate(20 * kMiB, stream);
  pool.free(a);
  pool.free(b);
  pool.free(c);
  EXPECT_EQ(pool.allocate(9 * kMiB, stream), b);
  EXPECT_EQ(pool.allocate(15 * kMiB, stream), c);
  EXPECT_EQ(pool.allocate(11 * kMiB, stream), a);
  EXPECT_EQ(pool.stats().segments_mapped, 3);
}

TEST(BlockPool, MiddleBlockFreedLastMergesWithBothNeighbours) {
  FakeSegments segments;
  BlockPool pool(segments);
  void* seg = pool.allocate(30 * kMiB, stream);
  pool.free(seg);
  void* a = pool.allocate(10 * kMiB, stream);
  void* b = pool.allocate(10 * kMiB, stream);
  void* c = pool.allocate(10 * kMiB, stream);
  EXPECT_EQ(addr(c), addr(seg) + 20 * kMiB);
  pool.free(a);
  pool.free(c);
  EXPECT_EQ(pool.release_free_segments(keep_none), 0u);  // b still lives in the segment
  pool.free(b);
  EXPECT_EQ(pool.release_free_segments(keep_none), 30 * kMiB);
  EXPECT_EQ(pool.stats().reserved, 0u);
  EXPECT_EQ(pool.stats().segments_unmapped, 1);
}

TEST(BlockPool, SmallRequestsShareASegmentThatLargeOnesNeverUse) {
  FakeSegments segments;
  BlockPool pool(segments);
  std::vector<void*> small;
  for (int i = 0; i < 64; ++i) small.push_back(pool.allocate(1000, stream));  // 1 KiB blocks
  EXPECT_EQ(pool.stats().segments_mapped, 1);
  EXPECT_EQ(pool.stats().allocated, 64 * kKiB);
  EXPECT_EQ(addr(small[63]), addr(small[0]) + 63 * kKiB);
  // The small segment's free 1.94 MiB is not handed to a 1 MiB request.
  void* large = pool.allocate(kMiB, stream);
  EXPECT_EQ(pool.stats().segments_mapped, 2);
  EXPECT_FALSE(addr(large) >= addr(small[0]) && addr(large) < addr(small[0]) + 2 * kMiB);
  for (void* p : small) pool.free(p);
  pool.free(large);
  EXPECT_EQ(pool.release_free_segments(keep_none), 4 * kMiB);
}

TEST(BlockPool, PoolsDoNotShareBlocksUntilMoved) {
  FakeSegments segments;
  BlockPool pool(segments);
  void* g = pool.allocate(8 * kMiB, graph);
  void* g_live = pool.allocate(2 * kMiB, graph);
  pool.free(g);
  void* s = pool.allocate(8 * kMiB, stream);  // the graph's free block is not the stream's
  EXPECT_NE(s, g);
  void* o = pool.allocate(8 * kMiB, other_stream);
  EXPECT_NE(o, s);
  pool.free(s);
  EXPECT_NE(pool.allocate(8 * kMiB, other_stream), s);
  // A kept graph pool's free segment survives the release; the stream's does not.
  EXPECT_EQ(pool.release_free_segments([](BlockPool::Pool p) { return p == graph; }), 8 * kMiB);
  // Once the graph is gone its segments serve the stream, the live block included when freed.
  pool.move_pool(graph, stream);
  EXPECT_EQ(pool.allocate(8 * kMiB, stream), g);
  pool.free(g_live);
  EXPECT_EQ(pool.allocate(2 * kMiB, stream), g_live);
}

TEST(BlockPool, NoRoomReturnsNullAndChangesNothing) {
  FakeSegments segments(64 * kMiB);
  BlockPool pool(segments);
  void* a = pool.allocate(40 * kMiB, stream);
  ASSERT_NE(a, nullptr);
  const BlockPool::Stats before = pool.stats();
  EXPECT_EQ(pool.allocate(30 * kMiB, stream), nullptr);
  const BlockPool::Stats after = pool.stats();
  EXPECT_EQ(after.allocated, before.allocated);
  EXPECT_EQ(after.reserved, before.reserved);
  EXPECT_EQ(after.segments_mapped, before.segments_mapped);
  // Freeing the cache lets the same request through (what the CUDA allocator's retry does).
  pool.free(a);
  pool.release_free_segments(keep_none);
  EXPECT_NE(pool.allocate(30 * kMiB, stream), nullptr);
}

TEST(BlockPool, UnknownPointersAreIgnored) {
  FakeSegments segments;
  BlockPool pool(segments);
  void* a = pool.allocate(4 * kMiB, stream);
  int local = 0;
  EXPECT_EQ(pool.free(&local), 0u);
  EXPECT_EQ(pool.free(static_cast<char*>(a) + 512), 0u);  // inside a block, not its start
  EXPECT_EQ(pool.free(a), 4 * kMiB);
  EXPECT_EQ(pool.free(a), 0u);  // twice
  EXPECT_EQ(pool.stats().allocated, 0u);
}

// A step repeated with the same requests settles: best fit with splitting may carve a block a
// later request of the first step had to itself, so the first repeats can map a few more
// segments (a few percent here), and after them none.
TEST(BlockPool, RepeatedStepSettlesAfterAFewSteps) {
  for (uint64_t seed : {1, 2, 3, 4}) {
    FakeSegments segments;
    BlockPool pool(segments);
    std::mt19937_64 rng(seed);
    std::vector<size_t> sizes;
    for (int i = 0; i < 200; ++i)
      sizes.push_back(std::uniform_int_distribution<size_t>(1, 64 * kMiB)(rng));
    auto step = [&] {  // a stack-like pattern with some early frees, as a training step makes
      std::vector<void*> live;
      for (size_t i = 0; i < sizes.size(); ++i) {
        live.push_back(pool.allocate(sizes[i], stream));
        if (i % 3 == 2) {
          pool.free(live[live.size() - 2]);
          live.erase(live.end() - 2);
        }
      }
      for (void* p : live) pool.free(p);
    };
    step();
    const BlockPool::Stats first = pool.stats();
    for (int i = 0; i < 5; ++i) step();
    const BlockPool::Stats warm = pool.stats();
    EXPECT_LE(warm.reserved, first.reserved + first.reserved / 10) << "seed " << seed;
    for (int i = 0; i < 20; ++i) step();
    EXPECT_EQ(pool.stats().segments_mapped, warm.segments_mapped) << "seed " << seed;
    EXPECT_EQ(pool.stats().reserved, warm.reserved) << "seed " << seed;
    EXPECT_EQ(pool.stats().allocated, 0u) << "seed " << seed;
  }
}

// Random allocations and frees in three pools, with occasional releases and a pool move; after
// every operation the live blocks must lie inside mapped segments without overlapping, and the
// statistics must equal what the live blocks and segments add up to.
TEST(BlockPool, RandomizedOperationsKeepEveryInvariant) {
  FakeSegments segments(4096 * kMiB);
  BlockPool pool(segments);
  std::mt19937_64 rng(2026);
  const BlockPool::Pool pools[] = {stream, other_stream, graph};
  struct Live {
    size_t size;
    BlockPool::Pool pool;
  };
  std::map<uintptr_t, Live> live;  // block start -> size as counted
  size_t peak = 0;
  auto check = [&](int op) {
    size_t allocated = 0;
    uintptr_t end = 0;
    for (auto& [start, l] : live) {
      ASSERT_GE(start, end) << "op " << op << ": overlapping blocks";
      end = start + l.size;
      allocated += l.size;
      auto seg = segments.mapped().upper_bound(start);
      ASSERT_NE(seg, segments.mapped().begin()) << "op " << op;
      --seg;
      ASSERT_LE(end, seg->first + seg->second) << "op " << op << ": block beyond its segment";
    }
    BlockPool::Stats s = pool.stats();
    ASSERT_EQ(s.allocated, allocated) << "op " << op;
    ASSERT_EQ(s.reserved, segments.in_use()) << "op " << op;
    peak = std::max(peak, allocated);
    ASSERT_EQ(s.peak_allocated, peak) << "op " << op;
  };
  for (int op = 0; op < 20000; ++op) {
    const int what = std::uniform_int_distribution<int>(0, 99)(rng);
    if (what < 50 || live.empty()) {
      const bool small = std::uniform_int_distribution<int>(0, 1)(rng) == 0;
      const size_t n = small ? std::uniform_int_distribution<size_t>(1, kMiB - 1)(rng)
                             : std::uniform_int_distribution<size_t>(kMiB, 48 * kMiB)(rng);
      const BlockPool::Pool p = pools[std::uniform_int_distribution<int>(0, 2)(rng)];
      void* ptr = pool.allocate(n, p);
      if (!ptr) {  // the budget is spent: give the cache back, as the CUDA allocator does
        pool.release_free_segments(keep_none);
        ptr = pool.allocate(n, p);
        if (!ptr) continue;
      }
      const size_t counted = pool.stats().allocated -
                             [&] { size_t a = 0; for (auto& [s, l] : live) a += l.size; return a; }();
      ASSERT_GE(counted, BlockPool::block_size(n));
      ASSERT_LT(counted, BlockPool::block_size(n) + kMiB) << "more than a short tail kept";
      live[addr(ptr)] = Live{counted, p};
    } else if (what < 97) {
      auto it = live.begin();
      std::advance(it, std::uniform_int_distribution<size_t>(0, live.size() - 1)(rng));
      ASSERT_EQ(pool.free(reinterpret_cast<void*>(it->first)), it->second.size);
      live.erase(it);
    } else if (what < 99) {
      pool.release_free_segments([](BlockPool::Pool p) { return p == graph; });
    } else {
      pool.move_pool(graph, stream);
      for (auto& [start, l] : live)
        if (l.pool == graph) l.pool = stream;
    }
    check(op);
    if (::testing::Test::HasFatalFailure()) return;
  }
  for (auto& [start, l] : live) pool.free(reinterpret_cast<void*>(start));
  live.clear();
  pool.release_free_segments(keep_none);
  EXPECT_TRUE(segments.mapped().empty()) << segments.mapped().size() << " segments left";
  EXPECT_EQ(pool.stats().reserved, 0u);
  EXPECT_EQ(pool.stats().segments_mapped, pool.stats().segments_unmapped);
}

}  // namespace
}  // namespace loom
