// AllocationTrace (core/memory.h): which storages it records, in what order, and that only one
// records at a time.
#include <gtest/gtest.h>

#include "core/memory.h"
#include "core/tensor.h"
#include "tests/support/testing.h"

namespace loom {
namespace {

TEST(AllocationTrace, RecordsAllocationsAndTheirReleasesInOrder) {
  Tensor before = zeros({100});  // allocated before the trace: its release is not recorded
  std::vector<AllocationEvent> events;
  const void* a_ptr = nullptr;
  {
    AllocationTrace trace;
    {
      Tensor a = Tensor::empty({1000}, DType::F32);
      a_ptr = a.raw_data();
      Tensor b = Tensor::empty({3}, DType::I64);
      before = Tensor();
    }
    events = trace.events();
  }
  ASSERT_EQ(events.size(), 4u);
  EXPECT_TRUE(events[0].allocated);
  EXPECT_EQ(events[0].bytes, 4000u);  // as requested, not rounded
  EXPECT_EQ(events[0].ptr, a_ptr);
  EXPECT_TRUE(events[0].device.is_cpu());
  EXPECT_TRUE(events[1].allocated);
  EXPECT_EQ(events[1].bytes, 24u);
  EXPECT_FALSE(events[2].allocated);  // b goes first (destroyed in reverse order)
  EXPECT_EQ(events[2].ptr, events[1].ptr);
  EXPECT_FALSE(events[3].allocated);
  EXPECT_EQ(events[3].ptr, a_ptr);
  EXPECT_EQ(events[3].bytes, 4000u);
}

TEST(AllocationTrace, ViewsShareTheirStorageAndAddNothing) {
  AllocationTrace trace;
  Tensor a = Tensor::empty({8, 8}, DType::F32);
  Tensor v = a.reshape({64});
  Tensor d = a.detach();
  EXPECT_EQ(trace.events().size(), 1u);
}

TEST(AllocationTrace, OneAtATime) {
  AllocationTrace trace;
  EXPECT_THROW_WITH(AllocationTrace second, ValueError, "already recording");
}

TEST(AllocationTrace, NothingIsRecordedOnceItEnds) {
  { AllocationTrace trace; }
  Tensor a = zeros({10});
  AllocationTrace next;  // a new trace starts empty
  EXPECT_TRUE(next.events().empty());
}

}  // namespace
}  // namespace loom
