#include "core/host_allocator.h"

#include <algorithm>
#include <cstdlib>
#include <mutex>
#include <unordered_map>
#include <unistd.h>
#include <vector>

#include "core/cpu_isa.h"
#include "core/error.h"

namespace loom::host_memory {
namespace {

// Beyond this, released blocks are freed: a quarter of the machine's memory. A training step's
// churn must fit (GPT-2 small's CPU step with AdamW releases about 2.5 GB of params, moments and
// gradients a step: a 2 GiB cap left 5% of it in the kernel's zeroing of fresh pages, and the
// step measured 0.90x with 6 GiB). Under AddressSanitizer nothing is kept, so that a use after
// release reaches freed memory and is reported.
size_t max_cached() {
#if defined(__SANITIZE_ADDRESS__)
  return 0;
#else
  static const size_t quarter = [] {
    const long pages = sysconf(_SC_PHYS_PAGES), page_size = sysconf(_SC_PAGE_SIZE);
    return pages > 0 && page_size > 0 ? size_t(pages) * size_t(page_size) / 4 : size_t(2) << 30;
  }();
  return quarter;
#endif
}

struct Cache {
  std::mutex mu;
  std::unordered_map<size_t, std::vector<void*>> free_lists;
  Stats stats;
};

Cache& cache() {
  // never destroyed: tensors may be released during exit
  static Cache* c = (require_cpu_isa(), new Cache());
  return *c;
}

/// Size classes, multiples of 64 bytes: 4 steps per power of two (at most 25% waste).
size_t size_class(size_t n) {
  if (n <= 64) return 64;
  size_t p = 1;
  while (p * 2 <= n) p *= 2;
  const size_t step = std::max<size_t>(p / 4, 64);
  return (n + step - 1) / step * step;
}

void* system_alloc(size_t n) {
  void* p = std::aligned_alloc(64, (n + 63) / 64 * 64);
  if (!p) LOOM_THROW(Error, "out of host memory allocating ", n, " bytes");
  return p;
}

}  // namespace

void* allocate(size_t nbytes) {
  size_t n = size_class(nbytes);
  Cache& c = cache();
  {
    std::lock_guard<std::mutex> lock(c.mu);
    c.stats.in_use += n;
    c.stats.peak_in_use = std::max(c.stats.peak_in_use, c.stats.in_use);
    auto it = c.free_lists.find(n);
    if (it != c.free_lists.end() && !it->second.empty()) {
      void* p = it->second.back();
      it->second.pop_back();
      c.stats.cached -= n;
      return p;
    }
    ++c.stats.system_allocs;
  }
  return system_alloc(n);
}

void release(void* ptr, size_t nbytes) {
  if (!ptr) return;
  size_t n = size_class(nbytes);
  Cache& c = cache();
  {
    std::lock_guard<std::mutex> lock(c.mu);
    c.stats.in_use -= n;
    if (c.stats.cached + n <= max_cached()) {
      c.free_lists[n].push_back(ptr);
      c.stats.cached += n;
      return;
    }
  }
  std::free(ptr);
}

Stats stats() {
  Cache& c = cache();
  std::lock_guard<std::mutex> lock(c.mu);
  return c.stats;
}

void empty_cache() {
  Cache& c = cache();
  std::lock_guard<std::mutex> lock(c.mu);
  for (auto& [n, list] : c.free_lists)
    for (void* p : list) std::free(p);
  c.free_lists.clear();
  c.stats.cached = 0;
}

}  // namespace loom::host_memory
