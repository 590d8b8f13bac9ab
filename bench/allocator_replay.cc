// loom_allocator_replay: replays an allocation trace written by `loom_bench --allocation-trace`
// through the CUDA caching allocator's block policy (core/block_pool.h: best fit, blocks split
// from segments and merged when freed) and through the policy it replaced (whole cached blocks
// reused when at most 1/8 (2x for small ones) larger than asked, never split), and prints one JSON
// line: the peak of the live tensors' bytes (what any allocator must hold), what those bytes are
// at the peak (the largest shares by the op that returned each storage and by the module path or
// gradient rule it was made in) and, for each policy, its peak of allocated bytes (what
// memory_stats' peak_allocated reports), its peak of reserved bytes (what the process takes from
// the device) and the segments it mapped.
//
//   loom_bench --model resnet50 --precision bf16 --batch 16 --allocation-trace /tmp/r50.trace
//   loom_allocator_replay /tmp/r50.trace
#include <algorithm>
#include <cstdint>
#include <fstream>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "core/block_pool.h"
#include "core/memory.h"

namespace {

using loom::BlockPool;

struct Event {
  bool allocated;
  int64_t id;
  size_t bytes;  // allocations only
};

// The largest `n` shares of `bytes_by_name`, in MiB, largest first, the rest summed as "(others)";
// an empty name shows as `empty_name`.
nlohmann::json largest(const std::map<std::string, size_t>& bytes_by_name, size_t n,
                       const std::string& empty_name) {
  std::vector<std::pair<size_t, std::string>> order;
  for (const auto& [name, bytes] : bytes_by_name) order.emplace_back(bytes, name.empty() ? empty_name : name);
  std::sort(order.rbegin(), order.rend());
  nlohmann::json out = nlohmann::json::array();
  size_t others = 0;
  for (size_t i = 0; i < order.size(); ++i) {
    if (i < n) out.push_back({{"name", order[i].second}, {"mib", double(order[i].first) / (1 << 20)}});
    else others += order[i].first;
  }
  if (others) out.push_back({{"name", "(others)"}, {"mib", double(others) / (1 << 20)}});
  return out;
}

struct PolicyResult {
  size_t peak_allocated = 0;
  size_t peak_reserved = 0;
  int64_t segments = 0;
};

// Address space for BlockPool: counts what is mapped, touches nothing.
class CountingSegments : public BlockPool::SegmentSource {
 public:
  void* map(size_t bytes) override {
    void* p = reinterpret_cast<void*>(next_);
    next_ += bytes;
    return p;
  }
  void unmap(void*, size_t) override {}

 private:
  uintptr_t next_ = uintptr_t(1) << 32;
};

PolicyResult replay_block_pool(const std::vector<Event>& events) {
  CountingSegments segments;
  BlockPool pool(segments);
  const int stream = 0;
  std::unordered_map<int64_t, void*> live;
  PolicyResult r;
  for (const Event& e : events) {
    if (e.allocated) {
      live[e.id] = pool.allocate(e.bytes, &stream);
    } else {
      pool.free(live.at(e.id));
      live.erase(e.id);
    }
    r.peak_reserved = std::max(r.peak_reserved, pool.stats().reserved);
  }
  r.peak_allocated = pool.stats().peak_allocated;
  r.segments = pool.stats().segments_mapped;
  return r;
}

// The policy before core/block_pool.h, as kernels/cuda/caching_allocator.cc had it.
PolicyResult replay_whole_blocks(const std::vector<Event>& events) {
  constexpr size_t kLarge = size_t(1) << 20, kGranule = size_t(2) << 20, kSmall = 512;
  auto round = [&](size_t n) {
    return n < kLarge ? std::max(kSmall, (n + kSmall - 1) / kSmall * kSmall)
                      : (n + kGranule - 1) / kGranule * kGranule;
  };
  std::multiset<size_t> free_blocks;
  std::unordered_map<int64_t, size_t> live;  // id -> block size
  size_t allocated = 0, reserved = 0;
  PolicyResult r;
  for (const Event& e : events) {
    if (e.allocated) {
      const size_t size = round(e.bytes);
      const size_t limit = size < kLarge ? size * 2 : size + std::max(size / 8, kGranule);
      auto it = free_blocks.lower_bound(size);
      size_t block = size;
      if (it != free_blocks.end() && *it <= limit) {
        block = *it;
        free_blocks.erase(it);
      } else {
        reserved += size;
        ++r.segments;
      }
      live[e.id] = block;
      allocated += block;
    } else {
      const size_t block = live.at(e.id);
      live.erase(e.id);
      allocated -= block;
      free_blocks.insert(block);
    }
    r.peak_allocated = std::max(r.peak_allocated, allocated);
    r.peak_reserved = std::max(r.peak_reserved, reserved);
  }
  return r;
}

nlohmann::json to_json(const PolicyResult& r) {
  const double mib = 1 << 20;
  return {{"peak_allocated_mib", double(r.peak_allocated) / mib},
          {"peak_reserved_mib", double(r.peak_reserved) / mib},
          {"segments", r.segments}};
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::cerr << "usage: loom_allocator_replay TRACE (written by loom_bench --allocation-trace)\n";
    return 2;
  }
  std::ifstream in(argv[1]);
  if (!in) {
    std::cerr << "loom_allocator_replay: cannot read '" << argv[1] << "'\n";
    return 1;
  }
  std::vector<Event> events;
  std::vector<loom::AllocationEvent> traced;  // the same, for loom::live_peak (ids as addresses)
  std::string header, line;
  std::unordered_set<int64_t> live;
  for (int64_t n = 1; std::getline(in, line); ++n) {
    if (line.rfind("#", 0) == 0) {
      if (header.empty()) header = line;
      continue;
    }
    std::istringstream fields(line);
    char kind = 0;
    Event e{};
    fields >> kind >> e.id;
    e.allocated = kind == '+';
    loom::AllocationEvent t{.allocated = e.allocated, .bytes = 0, .ptr = nullptr, .device = {}};
    if (e.allocated && (fields >> e.bytes)) {
      std::string rest;  // "op scope"; traces written before ops and scopes were kept end here
      if (std::getline(fields, rest)) {
        std::istringstream rest_fields(rest);
        if (rest_fields >> t.op && t.op == "-") t.op.clear();
        std::getline(rest_fields >> std::ws, t.scope);
      }
      fields.clear();
    }
    const bool known = e.allocated ? live.count(e.id) == 0 : live.count(e.id) == 1;
    if (fields.fail() || (kind != '+' && kind != '-') || !known) {
      std::cerr << "loom_allocator_replay: " << argv[1] << ":" << n << ": bad event '" << line
                << "'\n";
      return 1;
    }
    if (e.allocated) live.insert(e.id);
    else live.erase(e.id);
    t.bytes = e.bytes;
    t.ptr = reinterpret_cast<const void*>(uintptr_t(e.id) + 1);
    events.push_back(e);
    traced.push_back(std::move(t));
  }
  const loom::LivePeak peak = loom::live_peak(traced);
  nlohmann::json r;
  r["trace"] = header;
  r["events"] = events.size();
  r["peak_live_mib"] = double(peak.bytes) / (1 << 20);
  r["peak_live"] = {{"by_op", largest(peak.bytes_by_op, 12, "-")},
                    {"by_scope", largest(peak.bytes_by_scope, 12, "(outside modules)")}};
  r["block_pool"] = to_json(replay_block_pool(events));
  r["whole_blocks"] = to_json(replay_whole_blocks(events));
  std::cout << r.dump() << "\n";
  return 0;
}
