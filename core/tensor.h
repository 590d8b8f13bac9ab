// Tensor: an n-dimensional array on one device. Tensors are values: ops return new tensors and
// never modify their inputs (as JAX arrays). A Tensor is a view (shape, strides, offset) of a
// ref-counted Storage; copying a Tensor is cheap and shares the storage.
//
// Example:
//   Tensor x = loom::arange(6, DType::F32).reshape({2, 3});
//   Tensor y = (x * 2.0).to(Device::cuda());
//   std::cout << y << "\n";   // Tensor(shape=[2, 3], dtype=float32, device=cuda:0) [[0, 2, 4], ...]
#pragma once
#include <iosfwd>
#include <memory>
#include <string>
#include <vector>

#include "core/device.h"
#include "core/dtype.h"
#include "core/error.h"
#include "core/shape.h"
#include "core/storage.h"

namespace loom {

namespace autograd {
struct Node;
}

class Tensor {
 public:
  Tensor() = default;  // an undefined tensor (defined() == false)
  Tensor(std::shared_ptr<Storage> storage, Shape shape, Shape strides, int64_t offset, DType dtype);
  /// Uninitialised contiguous tensor.
  static Tensor empty(Shape shape, DType dtype = DType::F32, Device device = Device::cpu());
  /// Uninitialised contiguous CPU tensor in page-locked memory (Storage::allocate_pinned): its
  /// .to(cuda) is queued on the compute stream and returns without waiting for the copy.
  static Tensor empty_pinned(Shape shape, DType dtype = DType::F32);
  /// Uninitialised tensor whose rows (the last axis) start `row_pitch` >= shape.back() elements
  /// apart, the leading axes contiguous over those rows: a view of [..., row_pitch] storage.
  /// Products whose rows are padded to 16 bytes run on cuBLASLt's vector kernels in place.
  static Tensor empty_padded_rows(Shape shape, int64_t row_pitch, DType dtype, Device device);

  bool defined() const { return storage_ != nullptr; }
  const Shape& shape() const { return shape_; }
  int64_t ndim() const { return int64_t(shape_.size()); }
  int64_t dim(int64_t axis) const;  // negative axes count from the end
  int64_t numel() const { return shape_numel(shape_); }
  const Shape& strides() const { return strides_; }
  int64_t offset() const { return offset_; }
  DType dtype() const { return dtype_; }
  Device device() const;
  bool is_cuda() const { return device().is_cuda(); }
  bool is_pinned() const { return storage_ && storage_->pinned(); }
  size_t nbytes() const { return size_t(numel()) * dtype_size(dtype_); }
  const std::shared_ptr<Storage>& storage() const { return storage_; }

  bool is_contiguous() const;
  /// This tensor if contiguous, else a contiguous copy (differentiable).
  Tensor contiguous() const;

  /// Pointer to the first element (at the view's offset).
  void* raw_data() const;
  template <typename T>
  T* data() const {
    LOOM_CHECK(dtype_v<T> == dtype_, DTypeError, "data<", dtype_name(dtype_v<T>),
               ">() called on a tensor of dtype ", dtype_name(dtype_));
    return static_cast<T*>(raw_data());
  }

  /// A contiguous copy in pinned memory (*this when already pinned); CPU tensors only.
  Tensor pin_memory() const;
  /// Copy to another device (a no-op returning *this when already there). Differentiable.
  Tensor to(Device device) const;
  /// Cast to another dtype (a no-op when equal). Differentiable for floating types.
  Tensor to(DType dtype) const;
  Tensor reshape(Shape shape) const;  // one -1 allowed; differentiable

  /// The single element of a size-1 tensor, converted to T (synchronises with the GPU).
  template <typename T>
  T item() const;
  /// All elements in row-major order, converted to T (synchronises with the GPU).
  template <typename T>
  std::vector<T> to_vector() const;

  /// numpy-like text: summarised with "..." past 1000 elements.
  std::string str() const;

  // --- autodiff ---
  /// The same data without a gradient history (jax.lax.stop_gradient).
  Tensor detach() const;
  const std::shared_ptr<autograd::Node>& grad_node() const { return node_; }
  void set_grad_node(std::shared_ptr<autograd::Node> node) { node_ = std::move(node); }

 private:
  std::shared_ptr<Storage> storage_;
  Shape shape_;
  Shape strides_;
  int64_t offset_ = 0;
  DType dtype_ = DType::F32;
  std::shared_ptr<autograd::Node> node_;
};

std::ostream& operator<<(std::ostream& os, const Tensor& t);

// --- creation ---
Tensor zeros(Shape shape, DType dtype = DType::F32, Device device = Device::cpu());
Tensor ones(Shape shape, DType dtype = DType::F32, Device device = Device::cpu());
Tensor full(Shape shape, double value, DType dtype = DType::F32, Device device = Device::cpu());
/// 0-d tensor holding `value`.
Tensor scalar(double value, DType dtype = DType::F32, Device device = Device::cpu());
/// [start, stop) with `step`, like numpy.arange.
Tensor arange(double start, double stop, double step = 1, DType dtype = DType::F32,
              Device device = Device::cpu());
inline Tensor arange(int64_t n, DType dtype = DType::F32, Device device = Device::cpu()) {
  return arange(0, double(n), 1, dtype, device);
}
/// Copies host values into a new tensor of `shape` (numel must match) with the C++ type's dtype.
template <typename T>
Tensor from_vector(const std::vector<T>& values, Shape shape, Device device = Device::cpu());
Tensor zeros_like(const Tensor& t);
Tensor ones_like(const Tensor& t);
Tensor full_like(const Tensor& t, double value);
Tensor empty_like(const Tensor& t);

}  // namespace loom
