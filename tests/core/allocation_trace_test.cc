// AllocationTrace (core/memory.h): which storages it records, in what order, the op and the
// gradient rule each is named after, and that only one records at a time.
#include <gtest/gtest.h>

#include "core/grad.h"
#include "core/memory.h"
#include "core/ops/elementwise.h"
#include "core/ops/reduce.h"
#include "core/ops/softmax.h"
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

// The allocation event of `t`'s storage in `events` (the latest at its address).
const AllocationEvent* allocation_of(const std::vector<AllocationEvent>& events, const Tensor& t) {
  const AllocationEvent* found = nullptr;
  for (const AllocationEvent& e : events)
    if (e.allocated && e.ptr == t.storage()->data()) found = &e;
  return found;
}

TEST(AllocationTrace, NamesEachStorageAfterTheOpThatMadeIt) {
  Tensor x = full({4, 8}, 0.5);
  AllocationTrace trace;
  Tensor y = exp(x);
  Tensor v = y.reshape({32});      // a view: y's storage keeps its name
  Tensor z = relu(v);
  Tensor l = log_softmax(x, -1);   // its inner exps, sums and subtractions are not its name
  std::vector<AllocationEvent> events = trace.events();
  const AllocationEvent* ey = allocation_of(events, y);
  const AllocationEvent* ez = allocation_of(events, z);
  const AllocationEvent* el = allocation_of(events, l);
  ASSERT_TRUE(ey && ez && el);
  EXPECT_EQ(ey->op, "exp");
  EXPECT_EQ(ez->op, "relu");
  EXPECT_EQ(el->op, "log_softmax");
  EXPECT_EQ(ey->scope, "");  // outside modules and gradient rules
}

TEST(AllocationTrace, AllocationsOfAGradientRuleAreItsOps) {
  Tensor x = full({16}, 0.25);
  AllocationTrace trace;
  Tensor g = value_and_grad_tensor([](const Tensor& t) { return sum(exp(t)); })(x).second;
  std::vector<AllocationEvent> events = trace.events();
  const AllocationEvent* eg = allocation_of(events, g);
  ASSERT_TRUE(eg);
  EXPECT_EQ(eg->scope, "backward of exp");  // exp's rule multiplies by exp(x)
  bool forward_exp = false;
  for (const AllocationEvent& e : events)
    forward_exp |= e.allocated && e.op == "exp" && e.scope.empty();
  EXPECT_TRUE(forward_exp);
}

TEST(AllocationTrace, LivePeakSaysWhatWasLiveAtTheMost) {
  auto at = [](uintptr_t p) { return reinterpret_cast<const void*>(p); };
  std::vector<AllocationEvent> events = {
      {.allocated = true, .bytes = 100, .ptr = at(1), .device = Device::cpu(), .op = "conv", .scope = "/a"},
      {.allocated = true, .bytes = 50, .ptr = at(2), .device = Device::cpu(), .op = "relu", .scope = "/a"},
      {.allocated = false, .bytes = 100, .ptr = at(1), .device = Device::cpu()},
      {.allocated = false, .bytes = 8, .ptr = at(9), .device = Device::cpu()},  // before the trace
      {.allocated = true, .bytes = 30, .ptr = at(1), .device = Device::cpu(), .op = "", .scope = "/b"},
      {.allocated = true, .bytes = 90, .ptr = at(3), .device = Device::cpu(), .op = "conv", .scope = "/b"},
  };
  LivePeak peak = live_peak(events);
  EXPECT_EQ(peak.bytes, 170u);  // 50 + 30 + 90, above the 150 of the first two
  EXPECT_EQ(peak.event, 5u);
  EXPECT_EQ(peak.bytes_by_op, (std::map<std::string, size_t>{{"", 30}, {"conv", 90}, {"relu", 50}}));
  EXPECT_EQ(peak.bytes_by_scope, (std::map<std::string, size_t>{{"/a", 50}, {"/b", 120}}));
  EXPECT_EQ(live_peak({}).bytes, 0u);
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
