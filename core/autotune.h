// Timed autotuning of cuDNN's convolution algorithms and cuBLASLt's matrix products.
//
// By default a convolution takes the algorithm cuDNN's heuristics rank first for its shape: no
// device time and no memory beyond the chosen algorithm's workspace. With autotuning on, the
// first call of each shape (and pass: forward, input and kernel gradients) times the candidate
// algorithms on that call's own buffers (cudnnFind*AlgorithmEx) and every later call takes the
// fastest, as XLA's autotuner (on by default in JAX) and PyTorch's cudnn.benchmark do. The cost
// is paid once per shape, in the first steps; a shape met inside a loom::jit capture takes the
// heuristics' choice there, since timing waits for the device, and is timed at its first call
// outside one. Off by default: the choice then depends on timings, so two runs may pick
// different algorithms and round differently. In deterministic mode the switch is ignored: each
// run must take the same (deterministic) algorithm, so the heuristics choose.
//
// The products work the same way (`set_gemm_autotune`): the first call of each product shape,
// epilogue and alignment times up to 8 of cuBLASLt's heuristic algorithms on the call's own
// operands (the output written in place, or to scratch where the product adds into it) and keeps
// the fastest, as XLA's GEMM autotuner does. Batched products (attention's composed path) and
// deterministic mode keep the heuristic's first choice, as does a product met inside a
// loom::jit capture until its first call outside one: give a jitted step at least one eager
// warm-up call (JitOptions::warmup) so that its products and convolutions are timed there.
//
// Example:
//   loom::set_conv_autotune(true);   // before the first training steps
//   loom::set_gemm_autotune(true);
#pragma once

#include <cstdint>

#include "core/switch_scope.h"

namespace loom {

/// Process-wide switch (thread-safe); returns the previous value.
bool set_conv_autotune(bool enabled);
bool conv_autotune();

/// RAII: autotuning on (or off) for a scope, restoring the previous setting.
using ConvAutotuneScope = SwitchScope<set_conv_autotune>;

/// Process-wide switch for the products (thread-safe); returns the previous value.
bool set_gemm_autotune(bool enabled);
bool gemm_autotune();

/// RAII: product autotuning on (or off) for a scope, restoring the previous setting.
using GemmAutotuneScope = SwitchScope<set_gemm_autotune>;

/// How many times this process has timed a convolution pass's or a product's candidate
/// algorithms (once per shape and pass, as the choices are cached): what a benchmark's warm-up
/// spent on autotuning, and whether a shape was timed where it should (not) have been.
int64_t conv_timings();
int64_t gemm_timings();
/// Counted by the CUDA backend as it starts each timing.
void note_conv_timing();
void note_gemm_timing();

}  // namespace loom
