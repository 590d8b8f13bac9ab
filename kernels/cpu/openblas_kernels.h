// Which of OpenBLAS's kernel sets ("cores") loom's products run on. OpenBLAS picks one by CPU
// model when it loads, and a model newer than its table gets its SSE3 fallback: Debian 12's
// OpenBLAS 0.3.21 runs "Prescott" kernels on Intel's Emerald Rapids Xeons (family 6, model 207),
// 4.5x slower at sgemm than the AVX-512 kernels that CPU runs (docs/PERF.md, session 18). loom
// moves OpenBLAS to the kernels of the CPU's instruction set where OpenBLAS chose a lower one.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace loom::cpu {

/// The widest vector instructions a CPU has, or an OpenBLAS core's kernels use.
enum class SimdLevel { Unknown, Sse, Avx, Avx2, Avx512 };

/// This CPU's level, as the operating system enables it (AVX-512: F, CD, BW, DQ and VL).
SimdLevel cpu_simd_level();

/// The level of an OpenBLAS x86-64 core name, in any case ("Prescott": Sse, "Haswell": Avx2,
/// "SkylakeX": Avx512); Unknown for a name OpenBLAS 0.3.x does not list.
SimdLevel openblas_core_level(std::string_view core);

/// The core to switch OpenBLAS to when it chose `chosen` on a CPU of level `cpu`: OpenBLAS's
/// kernels for that level ("SkylakeX"; "Zen" or "Haswell"; "Sandybridge") where `chosen` is a
/// known core of a lower level, as newer OpenBLAS releases fall back by instruction set; nullopt
/// to keep it.
std::optional<std::string> better_openblas_core(std::string_view chosen, SimdLevel cpu, bool amd);

struct BlasKernels {
  std::string openblas_choice;  // OpenBLAS's own choice at load; "" for another BLAS
  std::string in_use;           // the core the products run on
  bool user_choice = false;     // OPENBLAS_CORETYPE was set: loom changes nothing
  // OpenBLAS runs its threads as OpenMP's (libopenblas0-openmp): loom's OpenMP loops between
  // products reuse them, where the pthread build's workers would spin against them.
  bool openmp_threads = false;

  /// "OpenBLAS SkylakeX kernels (OpenBLAS chose Prescott, below this CPU's instruction set)";
  /// "" for another BLAS.
  std::string describe() const;
};

/// Settled once, when loom's BLAS call is loaded (before main, one thread running), where the
/// BLAS is an OpenBLAS that picks its kernels at run time; OPENBLAS_CORETYPE, when set, is
/// left to decide.
const BlasKernels& blas_kernels();

}  // namespace loom::cpu
