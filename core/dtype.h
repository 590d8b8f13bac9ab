// Element types. Names and promotion follow numpy/JAX (x32 mode: no implicit 64-bit from Python
// scalars, but explicit f64/i64 tensors are supported).
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "core/half.h"

namespace loom {

enum class DType : uint8_t { F32, F64, BF16, F16, I32, I64, U8, U32, Bool };

std::string_view dtype_name(DType t);   // "float32", "bfloat16", ... (numpy names)
DType dtype_from_name(std::string_view name);  // inverse of dtype_name; throws DTypeError
constexpr size_t dtype_size(DType t) {
  switch (t) {
    case DType::F64: case DType::I64: return 8;
    case DType::F32: case DType::I32: case DType::U32: return 4;
    case DType::BF16: case DType::F16: return 2;
    case DType::U8: case DType::Bool: return 1;
  }
  return 0;
}
constexpr bool is_floating(DType t) {
  return t == DType::F32 || t == DType::F64 || t == DType::BF16 || t == DType::F16;
}
constexpr bool is_integral(DType t) { return !is_floating(t); }  // integers and bool
/// numpy/JAX result type of a binary op between two tensors.
DType promote_types(DType a, DType b);

template <typename T> struct dtype_of;
template <> struct dtype_of<float> { static constexpr DType value = DType::F32; };
template <> struct dtype_of<double> { static constexpr DType value = DType::F64; };
template <> struct dtype_of<bfloat16> { static constexpr DType value = DType::BF16; };
template <> struct dtype_of<float16> { static constexpr DType value = DType::F16; };
template <> struct dtype_of<int32_t> { static constexpr DType value = DType::I32; };
template <> struct dtype_of<int64_t> { static constexpr DType value = DType::I64; };
template <> struct dtype_of<uint8_t> { static constexpr DType value = DType::U8; };
template <> struct dtype_of<uint32_t> { static constexpr DType value = DType::U32; };
template <> struct dtype_of<bool> { static constexpr DType value = DType::Bool; };
template <typename T> inline constexpr DType dtype_v = dtype_of<T>::value;

/// Calls fn(T{}) with the C++ type of `t` (bfloat16/float16 are the storage structs).
template <typename Fn>
decltype(auto) visit_dtype(DType t, Fn&& fn) {
  switch (t) {
    case DType::F32: return fn(float{});
    case DType::F64: return fn(double{});
    case DType::BF16: return fn(bfloat16{});
    case DType::F16: return fn(float16{});
    case DType::I32: return fn(int32_t{});
    case DType::I64: return fn(int64_t{});
    case DType::U8: return fn(uint8_t{});
    case DType::U32: return fn(uint32_t{});
    case DType::Bool: return fn(bool{});
  }
  return fn(float{});
}

/// Calls fn(T{}) for a floating dtype; any other dtype throws DTypeError naming `op`.
template <typename Fn>
decltype(auto) visit_floating(DType t, const char* op, Fn&& fn);
/// fn(T{}, O{}) for an input dtype and its result's dtype (defined below).
template <typename Fn>
void visit_floating_in_out(DType in, DType out, const char* op, Fn&& fn);

/// Converts between any two element types on the host (float as the hub for the half types;
/// wider sources reach them through a round-to-odd float so they are rounded once).
template <typename To, typename From>
inline To convert(From v) {
  if constexpr (std::is_same_v<To, From>) {
    return v;
  } else if constexpr (std::is_same_v<From, bfloat16> || std::is_same_v<From, float16>) {
    return convert<To>(static_cast<float>(v));
  } else if constexpr ((std::is_same_v<To, bfloat16> || std::is_same_v<To, float16>) &&
                       (std::is_same_v<From, double> || std::is_same_v<From, int32_t> ||
                        std::is_same_v<From, uint32_t>)) {
    return To(round_to_odd_float(static_cast<double>(v)));  // one rounding, not two
  } else if constexpr (std::is_same_v<To, bfloat16> || std::is_same_v<To, float16>) {
    return To(static_cast<float>(v));
  } else if constexpr (std::is_same_v<To, bool>) {
    return v != From(0);
  } else {
    return static_cast<To>(v);
  }
}

[[noreturn]] void throw_not_floating(DType t, const char* op);
[[noreturn]] void throw_no_kernel_pair(DType in, DType out, const char* op);

template <typename Fn>
decltype(auto) visit_floating(DType t, const char* op, Fn&& fn) {
  switch (t) {
    case DType::F32: return fn(float{});
    case DType::F64: return fn(double{});
    case DType::BF16: return fn(bfloat16{});
    case DType::F16: return fn(float16{});
    default: throw_not_floating(t, op);
  }
}

/// Calls fn(T{}, O{}) for a floating input dtype and the dtype of a result computed from it:
/// O == T, or O == float for half inputs (a half tensor's float result). Other pairs throw
/// DTypeError naming `op`.
template <typename Fn>
void visit_floating_in_out(DType in, DType out, const char* op, Fn&& fn) {
  visit_floating(in, op, [&](auto t) {
    using T = decltype(t);
    if (out == in) return fn(t, t);
    if constexpr (std::is_same_v<T, bfloat16> || std::is_same_v<T, float16>)
      if (out == DType::F32) return fn(t, float{});
    throw_no_kernel_pair(in, out, op);
  });
}

/// `value` as a floating `dtype` holds it, back in double: what a weakly typed scalar becomes in
/// an op on a tensor of that dtype (where(mask, x, fill), x / keep).
inline double rounded_to(double value, DType dtype, const char* op) {
  return visit_floating(dtype, op, [&](auto z) { return convert<double>(convert<decltype(z)>(value)); });
}

}  // namespace loom
