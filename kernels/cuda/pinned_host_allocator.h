// Page-locked (pinned) host memory for input batches. The GPU copies from pinned memory by DMA,
// so a host-to-device copy from it can be queued on the compute stream and the host goes on at
// once, instead of waiting for a staged copy of pageable memory.
//
// A block freed while a queued copy may still read it is not reused until that copy has run:
// record_use() records an event on the copying stream, and allocate() only recycles blocks
// whose events have completed. Thread-safe (the loader's worker thread allocates, the training
// thread copies and frees). Blocks are cached by size class: cudaHostAlloc is slow.
#pragma once
#include <cstddef>
#include <cstdint>

#include "core/memory.h"
#include "kernels/cuda/runtime.h"

namespace loom::cuda {

/// Pinned host memory of at least `nbytes` (the caller must not write past nbytes).
void* pinned_allocate(size_t nbytes);
/// Gives the block starting at `ptr` back; it is reused once every recorded copy has run.
void pinned_free(void* ptr);
/// A copy reading the block that starts at `ptr` was queued on `stream`.
void pinned_record_use(void* ptr, Stream stream);
PinnedMemoryStats pinned_stats();
/// Copies pageable host memory to the device without waiting for the device: the bytes go
/// through a pinned block (reused once the queued copy has run), so `src` may be freed at once.
void copy_host_to_device_staged(void* dst, const void* src, size_t n, int device);
/// Frees every cached block whose copies have completed.
void pinned_empty_cache();

}  // namespace loom::cuda
