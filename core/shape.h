// Shapes and shape arithmetic shared by every op.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace loom {

using Shape = std::vector<int64_t>;

std::string shape_str(const Shape& s);  // "[2, 3]"
int64_t shape_numel(const Shape& s);
Shape contiguous_strides(const Shape& s);  // row-major, in elements
/// numpy broadcasting of two shapes; throws ShapeError naming `op` and both shapes.
Shape broadcast_shapes(const Shape& a, const Shape& b, const char* op);
/// Normalises a possibly negative axis for a tensor of rank `ndim`; throws IndexError naming `op`.
int64_t normalize_axis(int64_t axis, int64_t ndim, const char* op);
/// Dims [begin, end) of a strided view as one (size, stride) dim, if they are uniformly strided
/// (size-1 dims aside; none left: size 1, stride 0). False when no one stride describes them.
bool merge_dims(const Shape& shape, const Shape& strides, size_t begin, size_t end,
                int64_t& size, int64_t& stride);

}  // namespace loom
