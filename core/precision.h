// Global numerical-precision switches.
//
// TF32: Ampere and later GPUs can run float32 matrix products on tensor cores by rounding the
// inputs to 10 mantissa bits (TF32), roughly 8x faster but with ~1e-3 relative error. JAX's
// default precision on GPU allows it; loom keeps exact float32 unless asked, because silently
// lower precision is a worse surprise than a slower GEMM. Only the CUDA float32 GEMM reads the
// switch (bf16/f16 always use tensor cores; float64 never does; the CPU ignores it).
//
// Example:
//   loom::set_allow_tf32(true);   // faster f32 matmuls on the GPU from now on
//   { loom::Tf32Guard exact(false); ... }  // exact f32 inside this scope
#pragma once

#include "core/switch_scope.h"

namespace loom {

/// Turns TF32 tensor-core math for CUDA float32 matmuls on or off (default off). Thread-safe;
/// returns the previous value.
bool set_allow_tf32(bool allow);
bool allow_tf32();

/// Sets allow_tf32 for a scope and restores the previous value on exit.
using Tf32Guard = SwitchScope<set_allow_tf32>;

}  // namespace loom
