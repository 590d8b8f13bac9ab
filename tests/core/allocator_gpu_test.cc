// The CUDA caching allocator through the public API of core/memory.h: statistics, reuse without
// cudaMalloc in steady state, empty_cache(), the retry after freeing the cache when cudaMalloc
// fails, and the out-of-memory report. The block policy itself (splitting, merging, pools) is
// tested on the CPU: tests/core/block_pool_test.cc.
#include <gtest/gtest.h>

#include <regex>

#include "core/memory.h"
#include "core/tensor.h"
#include "tests/support/testing.h"

namespace loom {
namespace {

constexpr size_t kMiB = size_t(1) << 20;

TEST(AllocatorGpu, StatsTrackAllocatedReservedAndPeak) {
  LOOM_REQUIRE_GPU();
  Device g = Device::cuda(0);
  empty_cache(g);
  MemoryStats s0 = memory_stats(g);
  EXPECT_GE(s0.reserved, s0.allocated);
  MemoryStats s2;
  {
    Tensor a = Tensor::empty({int64_t(kMiB)}, DType::F32, g);  // 4 MiB: its own segment
    MemoryStats s1 = memory_stats(g);
    EXPECT_EQ(s1.allocated - s0.allocated, 4 * kMiB);
    EXPECT_EQ(s1.reserved - s0.reserved, 4 * kMiB);
    EXPECT_EQ(s1.num_device_mallocs - s0.num_device_mallocs, 1);
    EXPECT_GE(s1.peak_allocated, s1.allocated);
    Tensor b = Tensor::empty({1000}, DType::U8, g);  // small requests round up to 512 bytes
    s2 = memory_stats(g);
    EXPECT_EQ(s2.allocated - s1.allocated, 1024u);
    EXPECT_GE(s2.reserved, s2.allocated);
    EXPECT_GE(s2.peak_allocated, s0.allocated + 4 * kMiB + 1024);
  }
  MemoryStats s3 = memory_stats(g);
  EXPECT_EQ(s3.allocated, s0.allocated);          // both freed...
  EXPECT_EQ(s3.reserved, s2.reserved);            // ...but kept for reuse
  EXPECT_EQ(s3.peak_allocated, s2.peak_allocated);  // the high-water mark stays
  EXPECT_EQ(s3.num_device_frees, s0.num_device_frees);
  reset_peak_memory(g);
  EXPECT_EQ(memory_stats(g).peak_allocated, s3.allocated);
  {
    Tensor c = Tensor::empty({int64_t(kMiB) / 8}, DType::F32, g);  // 512 KiB
    EXPECT_EQ(memory_stats(g).peak_allocated, s3.allocated + kMiB / 2);
  }
  EXPECT_EQ(memory_stats(g).peak_allocated, s3.allocated + kMiB / 2);
}

TEST(AllocatorGpu, FreedBlockIsReusedForTheSameSize) {
  LOOM_REQUIRE_GPU();
  Device g = Device::cuda(0);
  empty_cache(g);  // so that the only cached block is the one freed below (with its segment)
  void* first = nullptr;
  {
    Tensor t = Tensor::empty({12345}, DType::F32, g);
    first = t.raw_data();
  }
  const MemoryStats cached = memory_stats(g);
  Tensor u = Tensor::empty({12345}, DType::F32, g);
  EXPECT_EQ(u.raw_data(), first);
  EXPECT_EQ(memory_stats(g).num_device_mallocs, cached.num_device_mallocs);
  EXPECT_EQ(memory_stats(g).reserved, cached.reserved);
}

TEST(AllocatorGpu, NoCudaMallocInSteadyState) {
  LOOM_REQUIRE_GPU();
  Device g = Device::cuda(0);
  Tensor host = arange(4096);
  double checksum = 0;
  auto step = [&](int i) {
    Tensor a = Tensor::empty({1000}, DType::F32, g);
    Tensor b = zeros({256, 1024}, DType::F32, g);
    Tensor c = full({3 << 20}, 1, DType::U8, g);
    Tensor d = host.to(g);
    Tensor e = b.to(DType::BF16);
    Tensor f = full({7, 13}, double(i), DType::F64, g);
    checksum += f.to_vector<double>()[90] + d.to_vector<float>()[4095];
  };
  // Warm-up: the first rounds fill the cache (best fit may carve a block a later request of the
  // first round had to itself, so a repeat can still map a segment; tests/core/block_pool_test.cc).
  for (int i = -4; i <= 0; ++i) step(i);
  MemoryStats warm = memory_stats(g);
  for (int i = 1; i <= 200; ++i) step(i);
  MemoryStats after = memory_stats(g);
  EXPECT_EQ(after.num_device_mallocs, warm.num_device_mallocs);
  EXPECT_EQ(after.num_device_frees, warm.num_device_frees);
  EXPECT_EQ(after.reserved, warm.reserved);
  EXPECT_EQ(after.allocated, warm.allocated);
  EXPECT_EQ(checksum, 200.0 * 201 / 2 - 10 + 205 * 4095.0);  // the work really ran
}

TEST(AllocatorGpu, EmptyCacheReleasesReservedBlocks) {
  LOOM_REQUIRE_GPU();
  Device g = Device::cuda(0);
  empty_cache(g);
  const MemoryStats start = memory_stats(g);
  // `keep` maps a 2 MiB segment and leaves its other 1 MiB free: a segment with a live block
  // stays whole with the driver.
  Tensor keep = Tensor::empty({int64_t(kMiB)}, DType::U8, g);
  {
    std::vector<Tensor> tmp;
    for (int i = 1; i <= 5; ++i) tmp.push_back(Tensor::empty({int64_t(i * kMiB)}, DType::F32, g));
  }
  MemoryStats cached = memory_stats(g);
  EXPECT_GE(cached.reserved, cached.allocated + 60 * kMiB);  // 4+8+...+20 MiB held, unused
  empty_cache(g);
  MemoryStats released = memory_stats(g);
  EXPECT_EQ(cached.reserved - released.reserved, 60 * kMiB);
  EXPECT_EQ(released.reserved - start.reserved, 2 * kMiB);  // keep's segment
  EXPECT_EQ(released.allocated, cached.allocated);
  EXPECT_GE(released.allocated, kMiB);  // the live tensor's block stays
  EXPECT_EQ(released.num_device_frees - cached.num_device_frees, 5);
  // The allocator keeps working afterwards, and the live tensor is intact.
  Tensor again = full({100}, 4, DType::F32, g);
  EXPECT_EQ(again.to_vector<float>()[99], 4.0f);
  EXPECT_EQ(memory_stats(g).num_device_mallocs, released.num_device_mallocs + 1);
}

TEST(AllocatorGpu, OutOfMemoryErrorReportsTheNumbers) {
  LOOM_REQUIRE_GPU();
  Device g = Device::cuda(0);
  Tensor keep = Tensor::empty({int64_t(4 * kMiB)}, DType::U8, g);
  const int64_t one_pib = int64_t(1) << 50;
  try {
    Tensor huge = Tensor::empty({one_pib}, DType::U8, g);
    FAIL() << "allocating 1 PiB succeeded";
  } catch (const OutOfMemoryError& e) {
    std::string msg = e.what();
    EXPECT_NE(msg.find("out of memory"), std::string::npos) << msg;
    EXPECT_NE(msg.find("cuda:0"), std::string::npos) << msg;
    EXPECT_NE(msg.find(std::to_string(one_pib) + " bytes"), std::string::npos) << msg;
    std::smatch m;
    ASSERT_TRUE(std::regex_search(msg, m, std::regex("free ([0-9]+) of total ([0-9]+) bytes")))
        << msg;
    uint64_t free_b = std::stoull(m[1]), total_b = std::stoull(m[2]);
    EXPECT_GT(total_b, uint64_t(1) << 30) << msg;  // a real GPU has more than 1 GiB
    EXPECT_LE(free_b, total_b) << msg;
    ASSERT_TRUE(std::regex_search(msg, m, std::regex("([0-9]+) bytes reserved"))) << msg;
    EXPECT_GE(std::stoull(m[1]), 4 * kMiB) << msg;  // `keep` is held
  }
  // It is a CudaError and a loom::Error too, and the allocator still works afterwards.
  EXPECT_THROW(Tensor::empty({one_pib}, DType::F32, g), CudaError);
  EXPECT_THROW(zeros({one_pib, 4}, DType::F32, g), Error);
  EXPECT_EQ(full({3}, 2, DType::I32, g).to_vector<int32_t>(), (std::vector<int32_t>{2, 2, 2}));
  EXPECT_GE(memory_stats(g).allocated, 4 * kMiB);
}

// An allocation that fits only once loom's cached blocks are back with the driver: the allocator
// must empty its cache and retry instead of failing. A request beyond the device's memory then
// fails after the same retry, and the message carries the allocator's numbers.
TEST(AllocatorGpu, OutOfMemoryFreesTheCacheAndRetriesOnce) {
  LOOM_REQUIRE_GPU();
  Device g = Device::cuda(0);
  constexpr size_t kGiB = size_t(1) << 30;
  empty_cache(g);
  DeviceMemory start = device_memory(g);
  ASSERT_GT(start.total, 8 * kGiB) << "the test fills the GPU with 1 GiB blocks";
  ASSERT_LE(start.free, start.total);
  // Cache all but < 2 GiB of the free memory in 1 GiB blocks.
  size_t n_cached = 0;
  {
    std::vector<Tensor> blocks;
    while (device_memory(g).free > 2 * kGiB)
      blocks.push_back(Tensor::empty({int64_t(kGiB)}, DType::U8, g));
    n_cached = blocks.size();
  }
  ASSERT_GE(n_cached, 6u);
  MemoryStats cached = memory_stats(g);
  EXPECT_GE(cached.reserved - cached.allocated, n_cached * kGiB);
  DeviceMemory low = device_memory(g);
  ASSERT_LT(low.free, 2 * kGiB);
  // More than the driver has free, larger than any cached block (so none is reused), less than
  // the driver would have without loom's cache.
  const size_t want = low.free + 4 * kGiB;
  {
    Tensor big = Tensor::empty({int64_t(want)}, DType::U8, g);
    MemoryStats after = memory_stats(g);
    EXPECT_EQ(after.num_device_frees - cached.num_device_frees, int64_t(n_cached));  // the cache went back
    EXPECT_EQ(after.num_device_mallocs - cached.num_device_mallocs, 1);  // and one retry got the block
    EXPECT_LT(after.reserved - after.allocated, 2 * kMiB);  // at most the new segment's tail
    EXPECT_GE(after.allocated, cached.allocated + want);
    EXPECT_EQ(full({4}, 1, DType::F32, g).to_vector<float>(), (std::vector<float>{1, 1, 1, 1}));
  }
  // Fill the cache again, then ask for more than the device has: the retry cannot help.
  {
    std::vector<Tensor> blocks;
    for (int i = 0; i < 3; ++i) blocks.push_back(Tensor::empty({int64_t(kGiB)}, DType::U8, g));
  }
  const int64_t too_much = int64_t(start.total + kGiB);
  try {
    Tensor t = Tensor::empty({too_much}, DType::U8, g);
    FAIL() << "allocating more than the device's memory succeeded";
  } catch (const OutOfMemoryError& e) {
    MemoryStats s = memory_stats(g);
    DeviceMemory m = device_memory(g);
    std::string msg = e.what();
    // Only the free parts of segments that hold a live block may stay (none in this test).
    EXPECT_LT(s.reserved - s.allocated, 2 * kMiB) << "the cache was not freed before failing";
    for (const std::string& part :
         {std::string("CUDA out of memory on cuda:0"),
          "tried to allocate " + std::to_string(too_much) + " bytes",
          "of total " + std::to_string(m.total) + " bytes",
          "loom holds " + std::to_string(s.reserved) + " bytes reserved, " +
              std::to_string(s.allocated) + " allocated",
          std::string("Reduce the batch size")})
      EXPECT_NE(msg.find(part), std::string::npos) << msg << "\nlacks: " << part;
  }
  // A normal allocation works afterwards.
  Tensor after = full({1000}, 3, DType::F32, g);
  EXPECT_EQ(after.to_vector<float>()[999], 3.0f);
  empty_cache(g);
  EXPECT_GE(device_memory(g).free + kGiB, start.free);  // everything went back
}

}  // namespace
}  // namespace loom
