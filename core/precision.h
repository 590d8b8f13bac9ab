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

namespace loom {

/// Turns TF32 tensor-core math for CUDA float32 matmuls on or off (default off). Thread-safe.
void set_allow_tf32(bool allow);
bool allow_tf32();

/// Sets allow_tf32 for a scope and restores the previous value on exit.
class Tf32Guard {
 public:
  explicit Tf32Guard(bool allow) : previous_(allow_tf32()) { set_allow_tf32(allow); }
  ~Tf32Guard() { set_allow_tf32(previous_); }
  Tf32Guard(const Tf32Guard&) = delete;
  Tf32Guard& operator=(const Tf32Guard&) = delete;

 private:
  bool previous_;
};

}  // namespace loom
