#include "modules/layers/common.h"

namespace loom::nn::detail {

std::vector<Tensor> promote_dtype(std::vector<Tensor> xs, std::optional<DType> dtype) {
  DType target = DType::F32;
  if (dtype) {
    target = *dtype;
  } else {
    bool first = true;
    for (const Tensor& x : xs) {
      if (!x.defined()) continue;
      target = first ? x.dtype() : promote_types(target, x.dtype());
      first = false;
    }
  }
  for (Tensor& x : xs)
    if (x.defined() && x.dtype() != target) x = x.to(target);
  return xs;
}

Axes canonical_axes(const Axes& axes, int64_t ndim, const std::string& where) {
  Axes out;
  for (int64_t a : axes) out.push_back(normalize_axis(a, ndim, where.c_str()));
  return out;
}

}  // namespace loom::nn::detail
