#include "core/tensor.h"

#include <cmath>
#include <cstring>

#include "core/autodiff.h"
#include "kernels/cpu/copy.h"
#if LOOM_CUDA
#include "kernels/cuda/copy.h"
#include "kernels/cuda/pinned_host_allocator.h"
#endif

namespace loom {

Tensor::Tensor(std::shared_ptr<Storage> storage, Shape shape, Shape strides, int64_t offset,
               DType dtype)
    : storage_(std::move(storage)),
      shape_(std::move(shape)),
      strides_(std::move(strides)),
      offset_(offset),
      dtype_(dtype) {}

namespace {

/// Bytes of a contiguous `shape` of `dtype`; ShapeError for negative or overflowing shapes.
size_t checked_nbytes(const Shape& shape, DType dtype) {
  for (int64_t d : shape)
    LOOM_CHECK(d >= 0, ShapeError, "empty: negative dimension in shape ", shape_str(shape));
  size_t nbytes = 0;
  if (__builtin_mul_overflow(size_t(shape_numel(shape)), dtype_size(dtype), &nbytes))
    LOOM_THROW(ShapeError, "empty: shape ", shape_str(shape), " of ", dtype_name(dtype),
               " needs more than 2^64 bytes");
  return nbytes;
}

}  // namespace

Tensor Tensor::empty(Shape shape, DType dtype, Device device) {
  size_t nbytes = checked_nbytes(shape, dtype);
  Shape strides = contiguous_strides(shape);
  return Tensor(Storage::allocate(nbytes, device), std::move(shape), std::move(strides), 0, dtype);
}

Tensor Tensor::empty_padded_rows(Shape shape, int64_t row_pitch, DType dtype, Device device) {
  LOOM_CHECK(!shape.empty() && row_pitch >= shape.back(), ShapeError, "empty_padded_rows: row pitch ",
             row_pitch, " is shorter than the rows of ", shape_str(shape));
  Shape storage_shape = shape;
  storage_shape.back() = row_pitch;
  size_t nbytes = checked_nbytes(storage_shape, dtype);
  Shape strides = contiguous_strides(storage_shape);
  return Tensor(Storage::allocate(nbytes, device), std::move(shape), std::move(strides), 0, dtype);
}

Tensor Tensor::empty_pinned(Shape shape, DType dtype) {
  size_t nbytes = checked_nbytes(shape, dtype);
  Shape strides = contiguous_strides(shape);
  return Tensor(Storage::allocate_pinned(nbytes), std::move(shape), std::move(strides), 0, dtype);
}

int64_t Tensor::dim(int64_t axis) const {
  return shape_[size_t(normalize_axis(axis, ndim(), "Tensor::dim"))];
}

Device Tensor::device() const {
  LOOM_CHECK(defined(), ValueError, "device() called on an undefined tensor");
  return storage_->device();
}

bool Tensor::is_contiguous() const {
  int64_t expected = 1;
  for (size_t i = shape_.size(); i-- > 0;) {
    if (shape_[i] != 1 && strides_[i] != expected) return false;
    expected *= shape_[i];
  }
  return true;
}

void* Tensor::raw_data() const {
  LOOM_CHECK(defined(), ValueError, "data access on an undefined tensor");
  return static_cast<char*>(storage_->data()) + offset_ * int64_t(dtype_size(dtype_));
}

Tensor Tensor::detach() const {
  Tensor t = *this;
  t.node_ = nullptr;
  return t;
}

namespace {

// Contiguous copy of `src` converted to `dtype`, on src's device.
Tensor copy_cast(const Tensor& src, DType dtype) {
  Tensor out = Tensor::empty(src.shape(), dtype, src.device());
  if (src.is_cuda()) {
    LOOM_CUDA_ONLY(cuda::strided_copy(src.raw_data(), src.dtype(), src.shape(), src.strides(),
                                      out.raw_data(), dtype,
                                      cuda::current_stream(src.device().index)));
  } else {
    cpu::strided_copy(src.raw_data(), src.dtype(), src.shape(), src.strides(), out.raw_data(),
                      dtype);
  }
  return out;
}

// Larger pageable copies (datasets moved once) wait instead of holding a pinned block that size.
constexpr size_t kStagedCopyMaxBytes = size_t(16) << 20;

Tensor copy_to_device(const Tensor& src, Device device) {
  check_device_usable(device, "Tensor::to");
  Tensor c = src.is_contiguous() ? src : copy_cast(src, src.dtype());
  Tensor out = Tensor::empty(src.shape(), src.dtype(), device);
  size_t n = out.nbytes();
  if (src.device().is_cpu() && device.is_cpu()) {
    std::memcpy(out.raw_data(), c.raw_data(), n);
  } else if (src.device().is_cpu() && c.is_pinned()) {
    // Queued without waiting; the pinned block is not reused before the copy has run.
    LOOM_CUDA_ONLY(cuda::copy_host_to_device_async(out.raw_data(), c.raw_data(), n, device.index);
                   cuda::pinned_record_use(c.storage()->data(), cuda::current_stream(device.index)));
  } else if (src.device().is_cpu() && n <= kStagedCopyMaxBytes) {
    // Small pageable copies (scalars, keys, index tables) go through a pinned staging block, so
    // the host never waits for the GPU to drain before queueing more work.
    LOOM_CUDA_ONLY(cuda::copy_host_to_device_staged(out.raw_data(), c.raw_data(), n, device.index));
  } else if (src.device().is_cpu()) {
    LOOM_CUDA_ONLY(cuda::copy_host_to_device(out.raw_data(), c.raw_data(), n, device.index));
  } else if (device.is_cpu()) {
    LOOM_CUDA_ONLY(cuda::copy_device_to_host(out.raw_data(), c.raw_data(), n, src.device().index));
  } else {
    LOOM_CHECK(src.device() == device, NotImplementedError, "Tensor::to: copies between GPUs (",
               src.device().str(), " -> ", device.str(), ") go through the host: call .to(cpu) first");
    LOOM_CUDA_ONLY(cuda::copy_device_to_device(out.raw_data(), c.raw_data(), n, device.index));
  }
  return out;
}

}  // namespace

Tensor Tensor::contiguous() const {
  if (is_contiguous()) return *this;
  Tensor out = copy_cast(*this, dtype_);
  return autograd::record("contiguous", out, {*this}, [](const Tensor& g) {
    return std::vector<Tensor>{g};
  });
}

Tensor Tensor::pin_memory() const {
  LOOM_CHECK(!is_cuda(), DeviceError, "pin_memory: the tensor is on ", device().str(),
             "; only CPU tensors can be pinned");
  if (is_pinned()) return *this;
  Tensor c = contiguous();
  Tensor out = empty_pinned(shape_, dtype_);
  std::memcpy(out.raw_data(), c.raw_data(), out.nbytes());
  return out;
}

Tensor Tensor::to(Device device) const {
  if (device == this->device()) return *this;
  Tensor out = copy_to_device(*this, device);
  Device from = this->device();
  return autograd::record("to_device", out, {*this}, [from](const Tensor& g) {
    return std::vector<Tensor>{g.to(from)};
  });
}

Tensor Tensor::to(DType dtype) const {
  if (dtype == dtype_) return *this;
  Tensor out = copy_cast(*this, dtype);
  if (!is_floating(dtype) || !is_floating(dtype_)) return out;  // no gradient through int casts
  DType from = dtype_;
  return autograd::record("cast", out, {*this}, [from](const Tensor& g) {
    return std::vector<Tensor>{g.to(from)};
  });
}

Tensor Tensor::reshape(Shape shape) const {
  int64_t known = 1, infer = -1;
  for (size_t i = 0; i < shape.size(); ++i) {
    if (shape[i] == -1) {
      LOOM_CHECK(infer < 0, ShapeError, "reshape: more than one -1 in ", shape_str(shape));
      infer = int64_t(i);
    } else {
      LOOM_CHECK(shape[i] >= 0, ShapeError, "reshape: negative dimension in ", shape_str(shape));
      known *= shape[i];
    }
  }
  if (infer >= 0) {
    LOOM_CHECK(known != 0 && numel() % known == 0, ShapeError, "reshape: cannot reshape ",
               shape_str(shape_), " into ", shape_str(shape));
    shape[size_t(infer)] = numel() / known;
  }
  LOOM_CHECK(shape_numel(shape) == numel(), ShapeError, "reshape: cannot reshape ",
             shape_str(shape_), " (", numel(), " elements) into ", shape_str(shape));
  // To its own shape: the tensor itself, with no node of its own, so that its consumers stay
  // the consumers of its producer (DenseGeneral reshapes x [..., in] to the same shape; a node
  // between them would keep the products' backward from adding into each other's gradient).
  if (shape == shape_ && is_contiguous()) return *this;
  Tensor c = contiguous();
  Tensor out(c.storage_, shape, contiguous_strides(shape), c.offset_, dtype_);
  Shape in_shape = shape_;
  return autograd::record("reshape", out, {c}, [in_shape](const Tensor& g) {
    return std::vector<Tensor>{g.reshape(in_shape)};
  });
}

template <typename T>
T Tensor::item() const {
  LOOM_CHECK(numel() == 1, ShapeError, "item: expected a tensor with one element, got shape ",
             shape_str(shape_));
  return to_vector<T>()[0];
}

template <typename T>
std::vector<T> Tensor::to_vector() const {
  Tensor host = to(Device::cpu()).detach();
  Tensor typed = host.dtype() == dtype_v<T> && host.is_contiguous() ? host : copy_cast(host, dtype_v<T>);
  const T* p = typed.data<T>();
  return std::vector<T>(p, p + typed.numel());
}

#define LOOM_INSTANTIATE_ACCESS(T)                  \
  template T Tensor::item<T>() const;              \
  template std::vector<T> Tensor::to_vector<T>() const;
LOOM_INSTANTIATE_ACCESS(float)
LOOM_INSTANTIATE_ACCESS(double)
LOOM_INSTANTIATE_ACCESS(bfloat16)
LOOM_INSTANTIATE_ACCESS(float16)
LOOM_INSTANTIATE_ACCESS(int32_t)
LOOM_INSTANTIATE_ACCESS(int64_t)
LOOM_INSTANTIATE_ACCESS(uint8_t)
LOOM_INSTANTIATE_ACCESS(uint32_t)
LOOM_INSTANTIATE_ACCESS(bool)
#undef LOOM_INSTANTIATE_ACCESS

// --- creation ---

Tensor full(Shape shape, double value, DType dtype, Device device) {
  Tensor t = Tensor::empty(std::move(shape), dtype, device);
  if (t.is_cuda()) {
    LOOM_CUDA_ONLY(cuda::fill(t.raw_data(), dtype, t.numel(), value,
                              cuda::current_stream(device.index)));
  } else {
    cpu::fill(t.raw_data(), dtype, t.numel(), value);
  }
  return t;
}
Tensor zeros(Shape shape, DType dtype, Device device) { return full(std::move(shape), 0, dtype, device); }
Tensor ones(Shape shape, DType dtype, Device device) { return full(std::move(shape), 1, dtype, device); }
Tensor scalar(double value, DType dtype, Device device) { return full({}, value, dtype, device); }

Tensor arange(double start, double stop, double step, DType dtype, Device device) {
  LOOM_CHECK(step != 0, ValueError, "arange: step must not be zero");
  int64_t n = std::max<int64_t>(0, int64_t(std::ceil((stop - start) / step)));
  // Made where it is used: no host copy, so a captured step (loom::jit) may call it.
  Tensor t = Tensor::empty({n}, dtype, device);
  if (t.is_cuda()) {
    LOOM_CUDA_ONLY(cuda::fill_range(t.raw_data(), dtype, n, start, step,
                                    cuda::current_stream(device.index)));
  } else {
    cpu::fill_range(t.raw_data(), dtype, n, start, step);
  }
  return t;
}

template <typename T>
Tensor from_vector(const std::vector<T>& values, Shape shape, Device device) {
  LOOM_CHECK(int64_t(values.size()) == shape_numel(shape), ShapeError, "from_vector: ",
             values.size(), " values do not fill shape ", shape_str(shape));
  Tensor t = Tensor::empty(std::move(shape), dtype_v<T>, Device::cpu());
  if (!values.empty()) {
    if constexpr (std::is_same_v<T, bool>) {
      for (size_t i = 0; i < values.size(); ++i) t.data<bool>()[i] = values[i];
    } else {
      std::memcpy(t.raw_data(), values.data(), values.size() * sizeof(T));
    }
  }
  return t.to(device);
}
template Tensor from_vector(const std::vector<float>&, Shape, Device);
template Tensor from_vector(const std::vector<double>&, Shape, Device);
template Tensor from_vector(const std::vector<bfloat16>&, Shape, Device);
template Tensor from_vector(const std::vector<float16>&, Shape, Device);
template Tensor from_vector(const std::vector<int32_t>&, Shape, Device);
template Tensor from_vector(const std::vector<int64_t>&, Shape, Device);
template Tensor from_vector(const std::vector<uint8_t>&, Shape, Device);
template Tensor from_vector(const std::vector<uint32_t>&, Shape, Device);
template Tensor from_vector(const std::vector<bool>&, Shape, Device);

Tensor zeros_like(const Tensor& t) { return zeros(t.shape(), t.dtype(), t.device()); }
Tensor ones_like(const Tensor& t) { return ones(t.shape(), t.dtype(), t.device()); }
Tensor full_like(const Tensor& t, double v) { return full(t.shape(), v, t.dtype(), t.device()); }
Tensor empty_like(const Tensor& t) { return Tensor::empty(t.shape(), t.dtype(), t.device()); }

}  // namespace loom
