// The operand checks every matrix product makes (matmul, dot_general, einsum, matmul_bias_act):
// both defined, on one device, promoting to a floating dtype; errors name the op and both shapes.
#pragma once
#include "core/error.h"
#include "core/tensor.h"

namespace loom {

inline void check_product_operands(const Tensor& a, const Tensor& b, const char* op) {
  LOOM_CHECK(a.defined() && b.defined(), ValueError, op, ": undefined operand");
  LOOM_CHECK(a.device() == b.device(), DeviceError, op, ": operands are on different devices (",
             a.device().str(), " with shape ", shape_str(a.shape()), " and ", b.device().str(),
             " with shape ", shape_str(b.shape()), "); move one with .to(device)");
  DType dt = promote_types(a.dtype(), b.dtype());
  LOOM_CHECK(is_floating(dt), DTypeError, op, ": operands must be floating, got ",
             dtype_name(a.dtype()), " (shape ", shape_str(a.shape()), ") and ",
             dtype_name(b.dtype()), " (shape ", shape_str(b.shape()), "); cast with .to(DType::F32)");
}

}  // namespace loom
