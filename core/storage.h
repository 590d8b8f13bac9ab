// Ref-counted device memory. A Storage owns one allocation on one device; Tensors are views of it.
#pragma once
#include <cstddef>
#include <memory>

#include "core/device.h"

namespace loom {

class Storage {
 public:
  /// Allocates `nbytes` on `device` (CPU: 64-byte aligned; CUDA: the caching allocator).
  static std::shared_ptr<Storage> allocate(size_t nbytes, Device device);
  /// Page-locked host memory (device cpu) that the GPU copies from asynchronously; ordinary
  /// host memory (pinned() false) when loom has no CUDA backend or no GPU is visible.
  static std::shared_ptr<Storage> allocate_pinned(size_t nbytes);
  /// Wraps memory owned elsewhere; `release` is called when the last reference goes.
  Storage(void* data, size_t nbytes, Device device, void (*release)(void*, size_t, Device));
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;

  void* data() const { return data_; }
  size_t nbytes() const { return nbytes_; }
  Device device() const { return device_; }
  bool pinned() const { return pinned_; }

 private:
  static std::shared_ptr<Storage> traced(std::shared_ptr<Storage> s);

  void* data_;
  size_t nbytes_;
  Device device_;
  void (*release_)(void*, size_t, Device);
  bool pinned_ = false;
  bool traced_ = false;  // allocated while an AllocationTrace recorded (core/memory.h)
};

}  // namespace loom
