// Ref-counted device memory. A Storage owns one allocation on one device; Tensors are views of it.
#pragma once
#include <cstddef>
#include <cstdint>
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

  /// A producer's promise that this storage holds rows of `pitch` elements whose elements
  /// [width, pitch) are zeros no view reads (softmax cross-entropy's gradient at a padded pitch):
  /// a GPU product may then read them as the zero padding of a contracted extent.
  void mark_zero_row_padding(int64_t pitch, int64_t width) {
    zero_pad_pitch_ = pitch;
    zero_pad_width_ = width;
  }
  bool has_zero_row_padding(int64_t pitch, int64_t width) const {
    return zero_pad_pitch_ > 0 && zero_pad_pitch_ == pitch && zero_pad_width_ == width;
  }

 private:
  static std::shared_ptr<Storage> traced(std::shared_ptr<Storage> s);

  void* data_;
  size_t nbytes_;
  Device device_;
  void (*release_)(void*, size_t, Device);
  bool pinned_ = false;
  bool traced_ = false;  // allocated while an AllocationTrace recorded (core/memory.h)
  int64_t zero_pad_pitch_ = 0, zero_pad_width_ = 0;
};

}  // namespace loom
