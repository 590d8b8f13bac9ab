#include "core/storage.h"

#include "core/error.h"
#include "core/host_allocator.h"
#include "core/memory.h"
#if LOOM_CUDA
#include "kernels/cuda/caching_allocator.h"
#include "kernels/cuda/pinned_host_allocator.h"
#endif

namespace loom {
namespace {

void release_cpu(void* p, size_t n, Device) { host_memory::release(p, n); }

#if LOOM_CUDA
void release_cuda(void* p, size_t, Device d) { cuda::CachingAllocator::get(d.index).free(p); }
void release_pinned(void* p, size_t, Device) { cuda::pinned_free(p); }
#endif

}  // namespace

std::shared_ptr<Storage> Storage::traced(std::shared_ptr<Storage> s) {
  if (allocation_trace_active()) [[unlikely]] {
    s->traced_ = true;
    record_allocation_event({true, s->nbytes_, s->data_, s->device_});
  }
  return s;
}

std::shared_ptr<Storage> Storage::allocate(size_t nbytes, Device device) {
  if (device.is_cpu()) {
    void* p = host_memory::allocate(nbytes);
    return traced(std::make_shared<Storage>(p, nbytes, device, &release_cpu));
  }
  check_device_usable(device, "allocate");
#if LOOM_CUDA
  void* p = cuda::CachingAllocator::get(device.index).allocate(nbytes);
  return traced(std::make_shared<Storage>(p, nbytes, device, &release_cuda));
#else
  detail::throw_not_compiled_with_cuda("allocate");
#endif
}

std::shared_ptr<Storage> Storage::allocate_pinned(size_t nbytes) {
#if LOOM_CUDA
  if (cuda::device_count() > 0) {
    auto s = std::make_shared<Storage>(cuda::pinned_allocate(nbytes), nbytes, Device::cpu(),
                                       &release_pinned);
    s->pinned_ = true;
    return s;
  }
#endif
  return allocate(nbytes, Device::cpu());
}

Storage::Storage(void* data, size_t nbytes, Device device, void (*release)(void*, size_t, Device))
    : data_(data), nbytes_(nbytes), device_(device), release_(release) {}

Storage::~Storage() {
  if (traced_) [[unlikely]]
    record_allocation_event({false, nbytes_, data_, device_});
  if (release_ && data_) release_(data_, nbytes_, device_);
}

}  // namespace loom
