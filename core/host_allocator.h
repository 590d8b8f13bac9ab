// Caching allocator for host (CPU) tensor memory. Large blocks (>= 64 KiB) are rounded to a
// size class and kept on a free list when released, so a training loop stops paying for
// mmap/munmap and page faults on every step; small blocks go straight to the C allocator.
#pragma once
#include <cstddef>

namespace loom::host_memory {

void* allocate(size_t nbytes);  // 64-byte aligned
void release(void* ptr, size_t nbytes);

struct Stats {
  size_t cached = 0;      // bytes held on free lists
  size_t in_use = 0;      // bytes of large blocks handed out
  size_t peak_in_use = 0;
  size_t system_allocs = 0;  // large blocks obtained from the system
};
Stats stats();
/// Returns every cached block to the system.
void empty_cache();

}  // namespace loom::host_memory
