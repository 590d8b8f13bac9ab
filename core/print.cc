// numpy-like printing: "Tensor(shape=[2, 3], dtype=float32, device=cpu)\n[[0, 1, 2],\n [3, 4, 5]]";
// past 1000 elements each dimension shows its first and last 3 entries around "...".
#include <cmath>
#include <cstdio>
#include <functional>
#include <ostream>

#include "core/tensor.h"

namespace loom {
namespace {

constexpr int64_t kSummariseAbove = 1000;
constexpr int64_t kEdgeItems = 3;

std::string format_value(double v, DType dtype) {
  if (dtype == DType::Bool) return v != 0 ? "True" : "False";
  if (is_integral(dtype)) return std::to_string(int64_t(v));
  if (std::isnan(v)) return "nan";
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.*g", dtype == DType::F64 ? 8 : 6, v);
  return buf;
}

// `value(i)` formats the element at flat index i.
void print_dim(std::ostream& os, const std::function<std::string(int64_t)>& value,
               const Shape& shape, const Shape& strides, size_t dim, int64_t offset,
               bool summarise, int indent) {
  if (shape.empty()) {
    os << value(offset);
    return;
  }
  os << "[";
  int64_t n = shape[dim];
  for (int64_t i = 0; i < n; ++i) {
    if (summarise && n > 2 * kEdgeItems && i == kEdgeItems) {
      // The same separator as between the entries around it (blank lines between blocks).
      if (dim + 1 == shape.size()) os << "..., ";
      else os << "...," << std::string(shape.size() - dim - 1, '\n') << std::string(size_t(indent + 1), ' ');
      i = n - kEdgeItems - 1;
      continue;
    }
    if (dim + 1 == shape.size()) {
      os << value(offset + i * strides[dim]);
    } else {
      print_dim(os, value, shape, strides, dim + 1, offset + i * strides[dim], summarise,
                indent + 1);
    }
    if (i + 1 < n) {
      if (dim + 1 == shape.size()) os << ", ";
      else os << "," << std::string(shape.size() - dim - 1, '\n') << std::string(size_t(indent + 1), ' ');
    }
  }
  os << "]";
}

}  // namespace

std::string Tensor::str() const {
  if (!defined()) return "Tensor(undefined)";
  std::ostringstream os;
  os << "Tensor(shape=" << shape_str(shape_) << ", dtype=" << dtype_name(dtype_)
     << ", device=" << device().str() << ")\n";
  std::function<std::string(int64_t)> value;
  if (dtype_ == DType::I64) {  // through double, values past 2^53 would print rounded
    value = [v = to_vector<int64_t>()](int64_t i) { return std::to_string(v[size_t(i)]); };
  } else {
    value = [v = to_vector<double>(), d = dtype_](int64_t i) {
      return format_value(v[size_t(i)], d);
    };
  }
  print_dim(os, value, shape_, contiguous_strides(shape_), 0, 0, numel() > kSummariseAbove, 0);
  return os.str();
}

std::ostream& operator<<(std::ostream& os, const Tensor& t) { return os << t.str(); }

}  // namespace loom
