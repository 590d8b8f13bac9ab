// Caching allocator for host (CPU) tensor memory. Blocks are rounded to a size class and kept
// on a free list when released, so a training loop stops paying for mmap/munmap and page faults
// of large blocks, and for the C allocator's bookkeeping (and consolidation) of small ones, on
// every step.
#pragma once
#include <cstddef>

namespace loom::host_memory {

void* allocate(size_t nbytes);  // 64-byte aligned
void release(void* ptr, size_t nbytes);

struct Stats {
  size_t cached = 0;      // bytes held on free lists
  size_t in_use = 0;      // bytes handed out (by size class)
  size_t peak_in_use = 0;
  size_t system_allocs = 0;  // blocks obtained from the system
};
Stats stats();
/// Returns every cached block to the system.
void empty_cache();

}  // namespace loom::host_memory
