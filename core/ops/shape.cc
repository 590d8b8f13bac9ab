#include "core/ops/shape.h"

#include <algorithm>
#include <string>

#include "core/autodiff.h"
#include "core/ops/dispatch.h"
#include "core/ops/elementwise.h"
#include "kernels/cpu/gather.h"
#include "kernels/cpu/pad.h"
#if LOOM_CUDA
#include "kernels/cuda/gather.h"
#include "kernels/cuda/pad.h"
#endif

namespace loom {
namespace {

using Grads = std::vector<Tensor>;

void check_defined(const Tensor& x, const char* op) {
  LOOM_CHECK(x.defined(), ValueError, op, ": undefined tensor");
}

std::string shapes_str(const std::vector<Tensor>& ts) {
  std::string s;
  for (size_t i = 0; i < ts.size(); ++i) s += (i ? ", " : "") + shape_str(ts[i].shape());
  return s;
}

/// Writes `src` into `dst` (a fresh tensor of src's dtype and device) at the region starting
/// `offset` elements in, laid out with `strides` over src's shape.
void assign_region(const Tensor& dst, int64_t offset, const Shape& strides, const Tensor& src) {
  LOOM_INTERNAL_ASSERT(src.dtype() == dst.dtype() && src.device() == dst.device());
  char* base = static_cast<char*>(dst.raw_data()) + offset * int64_t(dtype_size(dst.dtype()));
  if (dst.is_cuda()) {
    LOOM_CUDA_ONLY(cuda::strided_assign(src.raw_data(), src.strides(), base, strides, src.shape(),
                                        dst.dtype(), stream_of(dst)));
  } else {
    cpu::strided_assign(src.raw_data(), src.strides(), base, strides, src.shape(), dst.dtype());
  }
}

/// Gradient of a strided slice: g placed into zeros of the input's shape.
Tensor unslice(const Tensor& g, const Shape& in_shape, const Shape& start, const Shape& step) {
  Tensor z = zeros(in_shape, g.dtype(), g.device());
  Shape cs = contiguous_strides(in_shape), st(in_shape.size());
  int64_t off = 0;
  for (size_t d = 0; d < in_shape.size(); ++d) {
    off += start[d] * cs[d];
    st[d] = cs[d] * step[d];
  }
  assign_region(z, off, st, g);
  return z;
}

const char* pad_mode_name(PadMode m) {
  switch (m) {
    case PadMode::Constant: return "constant";
    case PadMode::Wrap: return "wrap";
    case PadMode::Reflect: return "reflect";
  }
  return "?";
}

}  // namespace

Tensor broadcast_to(const Tensor& x, const Shape& shape) {
  if (x.shape() == shape) return x;
  Shape target = broadcast_shapes(x.shape(), shape, "broadcast_to");
  LOOM_CHECK(target == shape, ShapeError, "broadcast_to: cannot broadcast shape ",
             shape_str(x.shape()), " to ", shape_str(shape));
  Shape strides(shape.size(), 0);
  size_t lead = shape.size() - x.shape().size();
  for (size_t d = 0; d < x.shape().size(); ++d)
    strides[lead + d] = x.shape()[d] == shape[lead + d] ? x.strides()[d] : 0;
  Tensor out(x.storage(), shape, strides, x.offset(), x.dtype());
  Shape in_shape = x.shape();
  return autograd::record("broadcast_to", out, {x}, [in_shape](const Tensor& g) {
    return std::vector<Tensor>{sum_to(g, in_shape)};
  });
}

Tensor transpose(const Tensor& x, const Axes& perm_in) {
  check_defined(x, "transpose");
  const int64_t nd = x.ndim();
  Axes perm = perm_in;
  if (perm.empty())
    for (int64_t d = nd - 1; d >= 0; --d) perm.push_back(d);
  LOOM_CHECK(int64_t(perm.size()) == nd, ShapeError, "transpose: permutation ", shape_str(perm_in),
             " does not have one entry per axis of shape ", shape_str(x.shape()));
  std::vector<bool> seen(static_cast<size_t>(nd), false);
  for (int64_t& p : perm) {
    p = normalize_axis(p, nd, "transpose");
    LOOM_CHECK(!seen[size_t(p)], ValueError, "transpose: ", shape_str(perm_in),
               " is not a permutation of the axes of shape ", shape_str(x.shape()));
    seen[size_t(p)] = true;
  }
  const size_t rank = static_cast<size_t>(nd);
  Shape shape(rank), strides(rank);
  Axes inverse(rank);
  bool identity = true;
  for (int64_t d = 0; d < nd; ++d) {
    shape[size_t(d)] = x.shape()[size_t(perm[size_t(d)])];
    strides[size_t(d)] = x.strides()[size_t(perm[size_t(d)])];
    inverse[size_t(perm[size_t(d)])] = d;
    identity = identity && perm[size_t(d)] == d;
  }
  if (identity) return x;
  Tensor out(x.storage(), shape, strides, x.offset(), x.dtype());
  return autograd::record("transpose", out, {x}, [inverse](const Tensor& g) {
    return Grads{transpose(g, inverse)};
  });
}

Tensor swapaxes(const Tensor& x, int64_t axis1, int64_t axis2) {
  check_defined(x, "swapaxes");
  int64_t a = normalize_axis(axis1, x.ndim(), "swapaxes");
  int64_t b = normalize_axis(axis2, x.ndim(), "swapaxes");
  Axes perm;
  for (int64_t d = 0; d < x.ndim(); ++d) perm.push_back(d);
  std::swap(perm[size_t(a)], perm[size_t(b)]);
  return transpose(x, perm);
}

Tensor expand_dims(const Tensor& x, int64_t axis) {
  check_defined(x, "expand_dims");
  const int64_t a = normalize_axis(axis, x.ndim() + 1, "expand_dims");
  Shape shape = x.shape(), strides = x.strides();
  int64_t stride = a < x.ndim() ? strides[size_t(a)] * shape[size_t(a)] : 1;
  shape.insert(shape.begin() + a, 1);
  strides.insert(strides.begin() + a, stride);
  Tensor out(x.storage(), shape, strides, x.offset(), x.dtype());
  return autograd::record("expand_dims", out, {x}, [a](const Tensor& g) {
    return Grads{squeeze(g, {a})};
  });
}

Tensor squeeze(const Tensor& x, const Axes& axes_in) {
  check_defined(x, "squeeze");
  Axes axes;
  if (axes_in.empty()) {
    for (int64_t d = 0; d < x.ndim(); ++d)
      if (x.shape()[size_t(d)] == 1) axes.push_back(d);
  } else {
    axes = normalize_axes(axes_in, x.ndim(), "squeeze");
    for (int64_t a : axes)
      LOOM_CHECK(x.shape()[size_t(a)] == 1, ShapeError, "squeeze: cannot squeeze axis ", a,
                 " of size ", x.shape()[size_t(a)], " (shape ", shape_str(x.shape()), ")");
  }
  if (axes.empty()) return x;
  Shape shape, strides;
  for (int64_t d = 0; d < x.ndim(); ++d) {
    if (std::find(axes.begin(), axes.end(), d) != axes.end()) continue;
    shape.push_back(x.shape()[size_t(d)]);
    strides.push_back(x.strides()[size_t(d)]);
  }
  Tensor out(x.storage(), shape, strides, x.offset(), x.dtype());
  return autograd::record("squeeze", out, {x}, [axes](const Tensor& g) {
    Tensor r = g;
    for (int64_t a : axes) r = expand_dims(r, a);  // ascending, so each lands at its place
    return Grads{r};
  });
}

Tensor flatten(const Tensor& x, int64_t start_axis, int64_t end_axis) {
  check_defined(x, "flatten");
  if (x.ndim() == 0) return x.reshape({1});
  int64_t s = normalize_axis(start_axis, x.ndim(), "flatten");
  int64_t e = normalize_axis(end_axis, x.ndim(), "flatten");
  LOOM_CHECK(s <= e, ValueError, "flatten: start axis ", start_axis, " comes after end axis ",
             end_axis, " (shape ", shape_str(x.shape()), ")");
  Shape shape(x.shape().begin(), x.shape().begin() + s);
  int64_t merged = 1;
  for (int64_t d = s; d <= e; ++d) merged *= x.shape()[size_t(d)];
  shape.push_back(merged);
  shape.insert(shape.end(), x.shape().begin() + e + 1, x.shape().end());
  return x.reshape(shape);
}

Tensor concatenate(const std::vector<Tensor>& tensors, int64_t axis) {
  LOOM_CHECK(!tensors.empty(), ValueError, "concatenate: needs at least one tensor");
  for (const Tensor& t : tensors) check_defined(t, "concatenate");
  const Tensor& ref = tensors[0];
  const int64_t nd = ref.ndim();
  LOOM_CHECK(nd >= 1, ShapeError, "concatenate: cannot concatenate 0-d tensors (shapes ",
             shapes_str(tensors), ")");
  const int64_t a = normalize_axis(axis, nd, "concatenate");
  DType dtype = ref.dtype();
  Shape out_shape = ref.shape();
  out_shape[size_t(a)] = 0;
  for (const Tensor& t : tensors) {
    bool match = t.ndim() == nd;
    for (int64_t d = 0; match && d < nd; ++d)
      match = d == a || t.shape()[size_t(d)] == ref.shape()[size_t(d)];
    LOOM_CHECK(match, ShapeError, "concatenate: shapes ", shapes_str(tensors),
               " must agree on every axis except axis ", axis);
    LOOM_CHECK(t.device() == ref.device(), DeviceError, "concatenate: tensors on different devices (",
               ref.device().str(), " and ", t.device().str(), "; shapes ", shapes_str(tensors), ")");
    dtype = promote_types(dtype, t.dtype());
    out_shape[size_t(a)] += t.shape()[size_t(a)];
  }
  if (tensors.size() == 1) return ref;
  Tensor out = Tensor::empty(out_shape, dtype, ref.device());
  const Shape& cs = out.strides();
  std::vector<int64_t> starts;
  std::vector<DType> dtypes;
  int64_t pos = 0;
  for (const Tensor& t : tensors) {
    assign_region(out, pos * cs[size_t(a)], cs, t.detach().to(dtype));
    starts.push_back(pos);
    dtypes.push_back(t.dtype());
    pos += t.shape()[size_t(a)];
  }
  if (!is_floating(dtype) || !autograd::needs_grad(tensors))
    return autograd::checked("concatenate", std::move(out), tensors);
  return autograd::record("concatenate", out, tensors, [=](const Tensor& g) {
    Grads grads;
    for (size_t i = 0; i < starts.size(); ++i) {
      int64_t end = i + 1 < starts.size() ? starts[i + 1] : g.shape()[size_t(a)];
      Tensor gi = slice_axis(g, a, starts[i], end);
      grads.push_back(is_floating(dtypes[i]) ? gi.to(dtypes[i]) : Tensor());
    }
    return grads;
  });
}

Tensor stack(const std::vector<Tensor>& tensors, int64_t axis) {
  LOOM_CHECK(!tensors.empty(), ValueError, "stack: needs at least one tensor");
  for (const Tensor& t : tensors) {
    check_defined(t, "stack");
    LOOM_CHECK(t.shape() == tensors[0].shape(), ShapeError,
               "stack: all tensors must have the same shape, got ", shapes_str(tensors));
  }
  const int64_t a = normalize_axis(axis, tensors[0].ndim() + 1, "stack");
  std::vector<Tensor> expanded;
  for (const Tensor& t : tensors) expanded.push_back(expand_dims(t, a));
  if (expanded.size() == 1) return expanded[0];
  return concatenate(expanded, a);
}

Tensor slice(const Tensor& x, const Shape& start, const Shape& limit, const Shape& strides_in) {
  check_defined(x, "slice");
  const size_t nd = size_t(x.ndim());
  Shape step = strides_in.empty() ? Shape(nd, 1) : strides_in;
  LOOM_CHECK(start.size() == nd && limit.size() == nd && step.size() == nd, ShapeError,
             "slice: start ", shape_str(start), ", limit ", shape_str(limit), " and strides ",
             shape_str(strides_in), " need one entry per axis of shape ", shape_str(x.shape()));
  Shape shape(nd), strides(nd);
  int64_t offset = x.offset();
  bool whole = true;
  for (size_t d = 0; d < nd; ++d) {
    LOOM_CHECK(step[d] >= 1, ValueError, "slice: strides ", shape_str(step),
               " must be positive (shape ", shape_str(x.shape()), ")");
    LOOM_CHECK(start[d] >= 0 && start[d] <= limit[d] && limit[d] <= x.shape()[d], IndexError,
               "slice: start ", shape_str(start), " and limit ", shape_str(limit),
               " are out of range for shape ", shape_str(x.shape()), " on axis ", d,
               " (need 0 <= start <= limit <= size)");
    shape[d] = (limit[d] - start[d] + step[d] - 1) / step[d];
    strides[d] = x.strides()[d] * step[d];
    offset += start[d] * x.strides()[d];
    whole = whole && start[d] == 0 && limit[d] == x.shape()[d] && step[d] == 1;
  }
  if (whole) return x;
  Tensor out(x.storage(), shape, strides, offset, x.dtype());
  if (!is_floating(x.dtype())) return out;
  Shape in_shape = x.shape();
  return autograd::record("slice", out, {x}, [=](const Tensor& g) {
    return Grads{unslice(g, in_shape, start, step)};
  });
}

Tensor slice_axis(const Tensor& x, int64_t axis, int64_t start, int64_t limit) {
  check_defined(x, "slice_axis");
  const int64_t a = normalize_axis(axis, x.ndim(), "slice_axis");
  const int64_t n = x.shape()[size_t(a)];
  Shape lo(size_t(x.ndim()), 0), hi = x.shape();
  lo[size_t(a)] = start < 0 ? start + n : start;
  hi[size_t(a)] = limit < 0 ? limit + n : limit;
  LOOM_CHECK(lo[size_t(a)] >= 0 && lo[size_t(a)] <= hi[size_t(a)] && hi[size_t(a)] <= n, IndexError,
             "slice_axis: [", start, ", ", limit, ") is out of range for axis ", axis,
             " of shape ", shape_str(x.shape()));
  return slice(x, lo, hi);
}

std::vector<Tensor> split(const Tensor& x, int64_t sections, int64_t axis) {
  check_defined(x, "split");
  const int64_t a = normalize_axis(axis, x.ndim(), "split");
  const int64_t n = x.shape()[size_t(a)];
  LOOM_CHECK(sections > 0 && n % sections == 0, ValueError, "split: axis ", axis, " of size ", n,
             " (shape ", shape_str(x.shape()), ") does not split into ", sections,
             " equal sections");
  std::vector<int64_t> indices;
  for (int64_t i = 1; i < sections; ++i) indices.push_back(i * (n / sections));
  return split(x, indices, a);
}

std::vector<Tensor> split(const Tensor& x, const std::vector<int64_t>& indices, int64_t axis) {
  check_defined(x, "split");
  const int64_t a = normalize_axis(axis, x.ndim(), "split");
  const int64_t n = x.shape()[size_t(a)];
  std::vector<Tensor> parts;
  int64_t prev = 0;
  for (size_t i = 0; i <= indices.size(); ++i) {
    int64_t end = i < indices.size() ? indices[i] : n;
    LOOM_CHECK(end >= prev && end <= n, ValueError, "split: indices ", shape_str(indices),
               " must be nondecreasing within [0, ", n, "] (axis ", axis, " of shape ",
               shape_str(x.shape()), ")");
    parts.push_back(slice_axis(x, a, prev, end));
    prev = end;
  }
  return parts;
}

Tensor pad(const Tensor& x, const std::vector<std::pair<int64_t, int64_t>>& pads, double value) {
  return pad(x, pads, PadMode::Constant, value);
}

Tensor pad(const Tensor& x, const std::vector<std::pair<int64_t, int64_t>>& pads, PadMode mode,
           double value) {
  check_defined(x, "pad");
  const size_t nd = size_t(x.ndim());
  LOOM_CHECK(pads.size() == nd, ShapeError, "pad: ", pads.size(),
             " (before, after) pairs given for shape ", shape_str(x.shape()),
             " (needs one per axis)");
  Shape lo(nd), out_shape(nd);
  bool any = false;
  for (size_t d = 0; d < nd; ++d) {
    auto [before, after] = pads[d];
    LOOM_CHECK(before >= 0 && after >= 0, ValueError, "pad: negative padding (", before, ", ",
               after, ") on axis ", d, " of shape ", shape_str(x.shape()));
    LOOM_CHECK(mode == PadMode::Constant || x.shape()[d] > 0 || (before == 0 && after == 0),
               ValueError, "pad: cannot ", pad_mode_name(mode), "-pad the empty axis ", d,
               " of shape ", shape_str(x.shape()));
    lo[d] = before;
    out_shape[d] = x.shape()[d] + before + after;
    any = any || before > 0 || after > 0;
  }
  if (!any) return x;
  Tensor out = Tensor::empty(out_shape, x.dtype(), x.device());
  if (x.is_cuda()) {
    LOOM_CUDA_ONLY(cuda::pad(x.raw_data(), x.shape(), x.strides(), out.raw_data(), out_shape, lo,
                             mode, value, x.dtype(), stream_of(x)));
  } else {
    cpu::pad(x.raw_data(), x.shape(), x.strides(), out.raw_data(), out_shape, lo, mode, value,
             x.dtype());
  }
  if (!is_floating(x.dtype()) || !autograd::needs_grad({&x}))
    return autograd::checked("pad", std::move(out), {&x});
  Shape in_shape = x.shape();
  DType dtype = x.dtype();
  if (mode == PadMode::Constant) {
    Shape hi(nd);
    for (size_t d = 0; d < nd; ++d) hi[d] = lo[d] + in_shape[d];
    return autograd::record("pad", out, {x}, [=](const Tensor& g) { return Grads{slice(g, lo, hi)}; });
  }
  return autograd::record("pad", out, {x}, [=](const Tensor& g) {
    // Every padded copy of an element adds to its gradient; accumulate in >= float32.
    DType acc = dtype == DType::F64 ? DType::F64 : DType::F32;
    Tensor gc = g.to(acc).contiguous();
    Tensor dx = zeros(in_shape, acc, g.device());
    if (g.is_cuda()) {
      LOOM_CUDA_ONLY(cuda::pad_backward(gc.raw_data(), out_shape, dx.raw_data(), in_shape, lo, mode,
                                        acc, stream_of(g)));
    } else {
      cpu::pad_backward(gc.raw_data(), out_shape, dx.raw_data(), in_shape, lo, mode, acc);
    }
    return Grads{dx.to(dtype)};
  });
}

}  // namespace loom
