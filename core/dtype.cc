#include "core/dtype.h"

#include "core/error.h"

namespace loom {

std::string_view dtype_name(DType t) {
  switch (t) {
    case DType::F32: return "float32";
    case DType::F64: return "float64";
    case DType::BF16: return "bfloat16";
    case DType::F16: return "float16";
    case DType::I32: return "int32";
    case DType::I64: return "int64";
    case DType::U8: return "uint8";
    case DType::U32: return "uint32";
    case DType::Bool: return "bool";
  }
  return "?";
}

DType dtype_from_name(std::string_view name) {
  for (DType t : {DType::F32, DType::F64, DType::BF16, DType::F16, DType::I32, DType::I64,
                  DType::U8, DType::U32, DType::Bool})
    if (dtype_name(t) == name) return t;
  LOOM_THROW(DTypeError, "unknown dtype name '", name, "'");
}

void throw_not_floating(DType t, const char* op) {
  LOOM_THROW(DTypeError, op, ": expected a floating dtype, got ", dtype_name(t));
}

void throw_no_kernel_pair(DType in, DType out, const char* op) {
  LOOM_THROW(DTypeError, op, ": no kernel for input ", dtype_name(in), " with output ", dtype_name(out));
}

DType promote_types(DType a, DType b) {
  if (a == b) return a;
  if (a == DType::Bool) return b;
  if (b == DType::Bool) return a;
  if (is_floating(a) != is_floating(b)) return is_floating(a) ? a : b;  // float wins (JAX: weak ints)
  if (is_floating(a)) {
    if (a == DType::F64 || b == DType::F64) return DType::F64;
    return DType::F32;  // f32 with anything, or bf16 with f16
  }
  // both integers (bool handled above): unsigned with unsigned stays unsigned (u8 + u32 = u32);
  // a signed type needs the next wider signed type to hold the unsigned one (u32 + i32 = i64).
  if (a == DType::I64 || b == DType::I64) return DType::I64;
  if (a == DType::U32 || b == DType::U32) {
    DType other = a == DType::U32 ? b : a;
    return other == DType::U8 ? DType::U32 : DType::I64;
  }
  return DType::I32;  // u8 with i32
}

}  // namespace loom
