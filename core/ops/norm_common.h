// What the normalisation ops share (core/ops/norm.cc, core/ops/batch_norm.cc): operand checks,
// parameter views against the input's feature axes, result and statistics dtypes, and the
// flat parameters the fused kernels take. Internal to those files.
#pragma once
#include <string>
#include <vector>

#include "core/ops/shape.h"
#include "core/tensor.h"

namespace loom::norm_detail {

inline std::string describe(const Tensor& t) {
  return detail::cat(shape_str(t.shape()), " (", dtype_name(t.dtype()), ")");
}

inline void check_input(const Tensor& x, const char* op) {
  LOOM_CHECK(x.defined(), ValueError, op, ": undefined input");
  LOOM_CHECK(is_floating(x.dtype()), DTypeError, op, ": expected a floating input, got ", describe(x));
}

/// Checks an optional parameter and returns it reshaped to a rank-ndim shape that broadcasts
/// against x: a parameter shaped like the feature axes (x's sizes at `axes`, Flax's layout) gets
/// size-1 dims elsewhere; anything else must already broadcast to x.
inline Tensor param_view(const Tensor& p, const char* name, const Tensor& x, const Axes& axes,
                         const char* op) {
  if (!p.defined()) return p;
  LOOM_CHECK(is_floating(p.dtype()), DTypeError, op, ": ", name, " must be floating, got ",
             describe(p), " for input ", describe(x));
  LOOM_CHECK(p.device() == x.device(), DeviceError, op, ": ", name, " is on ", p.device().str(),
             " but the input ", describe(x), " is on ", x.device().str());
  Shape feature, view(size_t(x.ndim()), 1);
  for (int64_t a : axes) {
    feature.push_back(x.shape()[size_t(a)]);
    view[size_t(a)] = x.shape()[size_t(a)];
  }
  if (p.shape() == feature) return p.reshape(view);
  bool ok = p.ndim() <= x.ndim();
  for (int64_t d = 0; ok && d < p.ndim(); ++d) {
    int64_t pd = p.shape()[size_t(d)], xd = x.shape()[size_t(x.ndim() - p.ndim() + d)];
    ok = pd == 1 || pd == xd;
  }
  LOOM_CHECK(ok, ShapeError, op, ": ", name, " ", describe(p), " must have the feature shape ",
             shape_str(feature), " or broadcast to the input ", describe(x));
  Shape full(size_t(x.ndim() - p.ndim()), 1);
  full.insert(full.end(), p.shape().begin(), p.shape().end());
  return p.reshape(full);
}

/// Result dtype (Flax: promoted from x and the parameters) and statistics dtype (f64 when any
/// operand is f64, else f32).
struct Dtypes {
  DType out, acc;
};
inline Dtypes dtypes_of(const Tensor& x, const Tensor& a, const Tensor& b) {
  DType out = x.dtype();
  if (a.defined()) out = promote_types(out, a.dtype());
  if (b.defined()) out = promote_types(out, b.dtype());
  bool f64 = x.dtype() == DType::F64 || out == DType::F64;
  return {out, f64 ? DType::F64 : DType::F32};
}

/// True when every defined parameter view is exactly `trailing` (1 elsewhere): the layout the
/// fused kernels take as a flat vector.
inline bool params_fit(const std::vector<Tensor>& views, const Shape& trailing_view) {
  for (const Tensor& p : views)
    if (p.defined() && p.shape() != trailing_view) return false;
  return true;
}

inline Tensor flat_acc(const Tensor& p, DType acc) {
  return p.defined() ? p.detach().to(acc).contiguous() : Tensor();
}
inline const void* ptr(const Tensor& t) { return t.defined() ? t.raw_data() : nullptr; }
inline void* out_ptr(const Tensor& t) { return t.defined() ? t.raw_data() : nullptr; }

/// Shape and dtype of a parameter, for backward closures (which must not hold its history).
struct ParamInfo {
  bool defined = false;
  Shape shape;
  DType dtype = DType::F32;
  explicit ParamInfo(const Tensor& p) : defined(p.defined()) {
    if (defined) {
      shape = p.shape();
      dtype = p.dtype();
    }
  }
};

/// Gradient of a parameter view back to the parameter's own shape and dtype.
inline Tensor param_grad(const Tensor& g, const ParamInfo& param) {
  return param.defined ? g.reshape(param.shape).to(param.dtype) : Tensor();
}

/// Whether the kernels write a result of dtype `out` from an input of dtype `in`: the input's own
/// dtype, or float32 from a half input.
inline bool kernel_writes(DType in, DType out) {
  return out == in || (out == DType::F32 && (in == DType::BF16 || in == DType::F16));
}

}  // namespace loom::norm_detail
