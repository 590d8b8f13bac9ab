// Indexing ops declared in core/ops/shape.h: take, take_along_axis, one_hot, tril/triu and the
// causal mask (kept apart from the view ops in shape.cc).
#include "core/autodiff.h"
#include "core/ops/dispatch.h"
#include "core/ops/elementwise.h"
#include "core/ops/shape.h"
#include "kernels/cpu/gather.h"
#if LOOM_CUDA
#include "kernels/cuda/gather.h"
#endif

namespace loom {
namespace {

using Grads = std::vector<Tensor>;

// Where a gather reads, over its output shape (see kernels/cpu/gather.h).
struct GatherPlan {
  Shape out_shape;
  Shape x_strides;    // of x, 0 on the dims that come from the indices
  Shape idx_strides;  // of the indices, 0 on the dims that come from x
  int64_t axis_stride = 0;
  int64_t axis_len = 0;
};

Tensor int64_indices(const Tensor& x, const Tensor& indices, const char* op) {
  LOOM_CHECK(x.defined() && indices.defined(), ValueError, op, ": undefined operand");
  LOOM_CHECK(is_integral(indices.dtype()) && indices.dtype() != DType::Bool, DTypeError, op,
             ": indices must have an integer dtype, got ", dtype_name(indices.dtype()),
             " (indices shape ", shape_str(indices.shape()), ", x shape ", shape_str(x.shape()), ")");
  LOOM_CHECK(indices.device() == x.device(), DeviceError, op, ": x (shape ", shape_str(x.shape()),
             ") is on ", x.device().str(), " but the indices (shape ", shape_str(indices.shape()),
             ") are on ", indices.device().str());
  return indices.detach().to(DType::I64);
}

GatherMode gather_mode(TakeMode mode, const Tensor& idx, int64_t n, int64_t axis, const Tensor& x,
                       const char* op) {
  if (mode == TakeMode::Clip) return GatherMode::Clip;
  if (mode == TakeMode::Checked) {
    std::vector<int64_t> v = idx.to_vector<int64_t>();  // synchronises with the GPU
    for (size_t i = 0; i < v.size(); ++i)
      LOOM_CHECK(v[i] >= -n && v[i] < n, IndexError, op, ": index ", v[i],
                 " (flat position ", i, " of indices of shape ", shape_str(idx.shape()),
                 ") is out of range for axis ", axis, " of size ", n, " (x shape ",
                 shape_str(x.shape()), ")");
  }
  return GatherMode::Fill;
}

Tensor run_gather(const Tensor& x, const Tensor& idx, const GatherPlan& p, GatherMode mode) {
  Tensor out = Tensor::empty(p.out_shape, x.dtype(), x.device());
  if (x.is_cuda()) {
    LOOM_CUDA_ONLY(cuda::gather(x.raw_data(), p.x_strides, p.axis_stride, p.axis_len,
                                idx.data<int64_t>(), p.idx_strides, out.raw_data(), p.out_shape,
                                x.dtype(), mode, stream_of(x)));
  } else {
    cpu::gather(x.raw_data(), p.x_strides, p.axis_stride, p.axis_len, idx.data<int64_t>(),
                p.idx_strides, out.raw_data(), p.out_shape, x.dtype(), mode);
  }
  return out;
}

/// The backward of a gather: g (shaped like its output) scatter-added into zeros of `dst_shape`
/// (contiguous), accumulated in float32 (float64 for f64) and cast to `dtype`. `p.x_strides` and
/// `p.axis_stride` must describe the contiguous dst.
Tensor run_scatter(const Tensor& g, const Tensor& idx, const GatherPlan& p, const Shape& dst_shape,
                   GatherMode mode, DType dtype) {
  DType acc = dtype == DType::F64 ? DType::F64 : DType::F32;
  Tensor gc = g.to(acc).contiguous();
  Tensor dst = zeros(dst_shape, acc, g.device());
  if (g.is_cuda()) {
    LOOM_CUDA_ONLY(cuda::scatter_add(gc.raw_data(), idx.data<int64_t>(), p.idx_strides,
                                     dst.raw_data(), p.x_strides, p.axis_stride, p.axis_len,
                                     p.out_shape, acc, mode, stream_of(g)));
  } else {
    cpu::scatter_add(gc.raw_data(), idx.data<int64_t>(), p.idx_strides, dst.raw_data(),
                     p.x_strides, p.axis_stride, p.axis_len, p.out_shape, acc, mode);
  }
  return dst.to(dtype);
}

Tensor triangle(const Tensor& x, int64_t k, bool lower, const char* op) {
  LOOM_CHECK(x.defined(), ValueError, op, ": undefined tensor");
  LOOM_CHECK(x.ndim() >= 2, ShapeError, op, ": needs a tensor of rank >= 2, got shape ",
             shape_str(x.shape()));
  const int64_t rows = x.dim(-2), cols = x.dim(-1);
  const int64_t batch = rows * cols == 0 ? 0 : x.numel() / (rows * cols);
  Tensor xc = x.detach().contiguous();
  Tensor out = Tensor::empty(x.shape(), x.dtype(), x.device());
  if (x.is_cuda()) {
    LOOM_CUDA_ONLY(cuda::triangle(xc.raw_data(), out.raw_data(), batch, rows, cols, k, lower,
                                  x.dtype(), stream_of(x)));
  } else {
    cpu::triangle(xc.raw_data(), out.raw_data(), batch, rows, cols, k, lower, x.dtype());
  }
  if (!is_floating(x.dtype()) || !autograd::needs_grad({&x}))
    return autograd::checked(op, std::move(out), {&x});
  return autograd::record(op, out, {x}, [=](const Tensor& g) {
    return Grads{triangle(g, k, lower, op)};
  });
}

}  // namespace

Tensor take(const Tensor& x, const Tensor& indices, int64_t axis, TakeMode mode) {
  Tensor idx = int64_indices(x, indices, "take");
  const int64_t a = normalize_axis(axis, x.ndim(), "take");
  GatherPlan p;
  p.axis_len = x.shape()[size_t(a)];
  p.axis_stride = x.strides()[size_t(a)];
  GatherMode gm = gather_mode(mode, idx, p.axis_len, axis, x, "take");
  for (int64_t d = 0; d < x.ndim(); ++d) {
    if (d == a) {
      for (int64_t e = 0; e < idx.ndim(); ++e) {
        p.out_shape.push_back(idx.shape()[size_t(e)]);
        p.x_strides.push_back(0);
        p.idx_strides.push_back(idx.strides()[size_t(e)]);
      }
    } else {
      p.out_shape.push_back(x.shape()[size_t(d)]);
      p.x_strides.push_back(x.strides()[size_t(d)]);
      p.idx_strides.push_back(0);
    }
  }
  Tensor out = run_gather(x, idx, p, gm);
  if (!is_floating(x.dtype()) || !autograd::needs_grad({&x}))
    return autograd::checked("take", std::move(out), {&x, &indices});
  // The backward scatters into a contiguous gradient of x's shape.
  GatherPlan back = p;
  Shape cs = contiguous_strides(x.shape());
  back.axis_stride = cs[size_t(a)];
  for (size_t d = 0, o = 0; d < size_t(x.ndim()); ++d) {
    if (int64_t(d) == a) {
      o += size_t(idx.ndim());
    } else {
      back.x_strides[o++] = cs[d];
    }
  }
  Shape in_shape = x.shape();
  DType dtype = x.dtype();
  return autograd::record("take", out, {x}, [=](const Tensor& g) {
    return Grads{run_scatter(g, idx, back, in_shape, gm, dtype)};
  });
}

Tensor take_along_axis(const Tensor& x, const Tensor& indices, int64_t axis, TakeMode mode) {
  Tensor idx = int64_indices(x, indices, "take_along_axis");
  LOOM_CHECK(idx.ndim() == x.ndim(), ShapeError, "take_along_axis: indices of shape ",
             shape_str(idx.shape()), " must have the rank of x (shape ", shape_str(x.shape()), ")");
  const int64_t a = normalize_axis(axis, x.ndim(), "take_along_axis");
  GatherPlan p;
  p.axis_len = x.shape()[size_t(a)];
  p.axis_stride = x.strides()[size_t(a)];
  GatherMode gm = gather_mode(mode, idx, p.axis_len, axis, x, "take_along_axis");
  Shape grad_shape;  // x broadcast against the indices (x's length on `axis`)
  for (size_t d = 0; d < size_t(x.ndim()); ++d) {
    const int64_t xd = x.shape()[d], id = idx.shape()[d];
    if (int64_t(d) == a) {
      p.out_shape.push_back(id);
      grad_shape.push_back(xd);
    } else {
      LOOM_CHECK(xd == id || xd == 1 || id == 1, ShapeError, "take_along_axis: x of shape ",
                 shape_str(x.shape()), " and indices of shape ", shape_str(idx.shape()),
                 " do not broadcast on axis ", d);
      p.out_shape.push_back(xd == 1 ? id : xd);
      grad_shape.push_back(p.out_shape.back());
    }
    p.x_strides.push_back(int64_t(d) == a || xd == 1 ? 0 : x.strides()[d]);
    p.idx_strides.push_back(id == 1 ? 0 : idx.strides()[d]);
  }
  Tensor out = run_gather(x, idx, p, gm);
  if (!is_floating(x.dtype()) || !autograd::needs_grad({&x}))
    return autograd::checked("take_along_axis", std::move(out), {&x, &indices});
  GatherPlan back = p;
  Shape cs = contiguous_strides(grad_shape);
  back.axis_stride = cs[size_t(a)];
  for (size_t d = 0; d < grad_shape.size(); ++d) back.x_strides[d] = int64_t(d) == a ? 0 : cs[d];
  Shape in_shape = x.shape();
  DType dtype = x.dtype();
  return autograd::record("take_along_axis", out, {x}, [=](const Tensor& g) {
    return Grads{sum_to(run_scatter(g, idx, back, grad_shape, gm, dtype), in_shape)};
  });
}

Tensor one_hot(const Tensor& indices, int64_t num_classes, DType dtype) {
  LOOM_CHECK(indices.defined(), ValueError, "one_hot: undefined indices");
  LOOM_CHECK(is_integral(indices.dtype()) && indices.dtype() != DType::Bool, DTypeError,
             "one_hot: indices must have an integer dtype, got ", dtype_name(indices.dtype()),
             " (shape ", shape_str(indices.shape()), ")");
  LOOM_CHECK(num_classes >= 0, ValueError, "one_hot: num_classes must be >= 0, got ", num_classes,
             " (indices shape ", shape_str(indices.shape()), ")");
  Tensor idx = indices.detach().to(DType::I64).contiguous();
  Shape shape = indices.shape();
  shape.push_back(num_classes);
  Tensor out = Tensor::empty(shape, dtype, indices.device());
  if (out.is_cuda()) {
    LOOM_CUDA_ONLY(cuda::one_hot(idx.data<int64_t>(), idx.numel(), num_classes, out.raw_data(),
                                 dtype, stream_of(out)));
  } else {
    cpu::one_hot(idx.data<int64_t>(), idx.numel(), num_classes, out.raw_data(), dtype);
  }
  return out;
}

Tensor tril(const Tensor& x, int64_t k) { return triangle(x, k, true, "tril"); }
Tensor triu(const Tensor& x, int64_t k) { return triangle(x, k, false, "triu"); }

Tensor causal_mask(int64_t n, Device device) {
  LOOM_CHECK(n >= 0, ValueError, "causal_mask: length must be >= 0, got ", n);
  return tril(ones({n, n}, DType::Bool, device));
}

}  // namespace loom
