// Deterministic mode: the same program and seed give bitwise-identical results run after run.
// The CPU kernels are deterministic already (fixed reduction order); on CUDA, ops whose only
// implementation varies from run to run (atomicAdd accumulation, some cuDNN algorithms) throw
// NotImplementedError in this mode instead of silently varying:
//   - the scatter-add in the CUDA backward of take / take_along_axis (kernels/cuda/gather.cu);
//   - the CUDA backward of pad in wrap or reflect mode (kernels/cuda/pad.cu);
//   - cuDNN convolution algorithms not marked CUDNN_DETERMINISTIC (kernels/cuda/conv.cc picks
//     only deterministic ones, and throws when there is none).
// Off by default (like PyTorch's use_deterministic_algorithms / XLA's
// --xla_gpu_deterministic_ops).
//
// Example:
//   loom::DeterministicScope det;   // or loom::set_deterministic(true)
#pragma once

#include "core/switch_scope.h"

namespace loom {

/// Process-wide switch (thread-safe); returns the previous value.
bool set_deterministic(bool enabled);
bool deterministic();

/// RAII: deterministic mode on (or off) for a scope, restoring the previous setting.
using DeterministicScope = SwitchScope<set_deterministic>;

}  // namespace loom
