#include "core/shape.h"

#include "core/error.h"

namespace loom {

std::string shape_str(const Shape& s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) {
    if (i) out += ", ";
    out += std::to_string(s[i]);
  }
  return out + "]";
}

int64_t shape_numel(const Shape& s) {
  for (int64_t d : s)
    if (d == 0) return 0;  // before multiplying: huge dimensions beside a 0 must not overflow
  int64_t n = 1;
  for (int64_t d : s)
    if (__builtin_mul_overflow(n, d, &n))
      LOOM_THROW(ShapeError, "shape ", shape_str(s), " has more than 2^63 elements");
  return n;
}

Shape contiguous_strides(const Shape& s) {
  Shape st(s.size());
  int64_t acc = 1;
  for (size_t i = s.size(); i-- > 0;) {
    st[i] = acc;
    // An empty tensor's other dimensions may multiply past 2^63 (a hostile file header can say
    // [0, 2^32, 2^32, ...]); its strides address nothing, so they stop growing there.
    if (__builtin_mul_overflow(acc, s[i], &acc)) {
      shape_numel(s);  // throws unless some dimension is 0
      acc = st[i];
    }
  }
  return st;
}

Shape broadcast_shapes(const Shape& a, const Shape& b, const char* op) {
  size_t n = std::max(a.size(), b.size());
  Shape out(n);
  for (size_t i = 0; i < n; ++i) {
    int64_t da = i < n - a.size() ? 1 : a[i - (n - a.size())];
    int64_t db = i < n - b.size() ? 1 : b[i - (n - b.size())];
    if (da != db && da != 1 && db != 1)
      LOOM_THROW(ShapeError, op, ": shapes ", shape_str(a), " and ", shape_str(b),
                 " cannot be broadcast together (dimension ", i, ": ", da, " vs ", db, ")");
    out[i] = da == 1 ? db : da;
  }
  return out;
}

int64_t normalize_axis(int64_t axis, int64_t ndim, const char* op) {
  int64_t a = axis < 0 ? axis + ndim : axis;
  if (a < 0 || a >= ndim)
    LOOM_THROW(IndexError, op, ": axis ", axis, " is out of range for a tensor of rank ", ndim);
  return a;
}

bool merge_dims(const Shape& shape, const Shape& strides, size_t begin, size_t end,
                int64_t& size, int64_t& stride) {
  size = 1;
  stride = 0;
  bool first = true;
  for (size_t d = begin; d < end; ++d) {
    int64_t n = shape[d], s = strides[d];
    if (n == 1) continue;
    if (first) {
      size = n;
      stride = s;
      first = false;
    } else if (stride == s * n) {
      size *= n;
      stride = s;
    } else {
      return false;
    }
  }
  return true;
}

}  // namespace loom
