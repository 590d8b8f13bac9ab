// Compiled for the x86-64 baseline (CMakeLists.txt): it runs before main, before the check that
// the CPU has loom's instruction set (core/cpu_isa.h) could say what is missing.
#include "kernels/cpu/openblas_kernels.h"

#include <strings.h>

#include <array>
#include <cstdlib>
#include <utility>

// OpenBLAS's run-time kernel choice (DYNAMIC_ARCH builds, as Debian's). Weak: with another BLAS,
// or an OpenBLAS built for one CPU, they are null and nothing is switched. gotoblas_dynamic_quit
// forgets the choice and gotoblas_dynamic_init makes it again, reading OPENBLAS_CORETYPE
// (OpenBLAS's driver/others/dynamic.c). cblas.h is not included: it declares the first strong.
extern "C" {
char* openblas_get_corename(void) __attribute__((weak));
int openblas_get_parallel(void) __attribute__((weak));  // 0 none, 1 pthreads, 2 OpenMP
void gotoblas_dynamic_init(void) __attribute__((weak));
void gotoblas_dynamic_quit(void) __attribute__((weak));
}

namespace loom::cpu {
namespace {

constexpr std::array<std::pair<const char*, SimdLevel>, 26> kOpenblasCores{{
    {"Katmai", SimdLevel::Sse},       {"Coppermine", SimdLevel::Sse},
    {"Northwood", SimdLevel::Sse},    {"Prescott", SimdLevel::Sse},
    {"Banias", SimdLevel::Sse},       {"Atom", SimdLevel::Sse},
    {"Core2", SimdLevel::Sse},        {"Penryn", SimdLevel::Sse},
    {"Dunnington", SimdLevel::Sse},   {"Nehalem", SimdLevel::Sse},
    {"Athlon", SimdLevel::Sse},       {"Opteron", SimdLevel::Sse},
    {"Opteron_SSE3", SimdLevel::Sse}, {"Barcelona", SimdLevel::Sse},
    {"Nano", SimdLevel::Sse},         {"Bobcat", SimdLevel::Sse},
    {"Sandybridge", SimdLevel::Avx},  {"Bulldozer", SimdLevel::Avx},
    {"Piledriver", SimdLevel::Avx},   {"Steamroller", SimdLevel::Avx},
    {"Excavator", SimdLevel::Avx},    {"Haswell", SimdLevel::Avx2},
    {"Zen", SimdLevel::Avx2},         {"SkylakeX", SimdLevel::Avx512},
    {"Cooperlake", SimdLevel::Avx512}, {"SapphireRapids", SimdLevel::Avx512},
}};

bool cpu_is_amd() {
#if defined(__x86_64__)
  __builtin_cpu_init();
  return __builtin_cpu_is("amd");
#else
  return false;
#endif
}

BlasKernels settle() {
  BlasKernels k;
  k.openmp_threads = openblas_get_parallel && openblas_get_parallel() == 2;
  if (!openblas_get_corename || !gotoblas_dynamic_init || !gotoblas_dynamic_quit) return k;
  k.openblas_choice = k.in_use = openblas_get_corename();
  k.user_choice = std::getenv("OPENBLAS_CORETYPE") != nullptr;
  if (k.user_choice) return k;
  const auto better = better_openblas_core(k.openblas_choice, cpu_simd_level(), cpu_is_amd());
  if (!better) return k;
  // Before main no other thread reads the environment; the variable is gone again afterwards.
  setenv("OPENBLAS_CORETYPE", better->c_str(), 1);
  gotoblas_dynamic_quit();
  gotoblas_dynamic_init();
  unsetenv("OPENBLAS_CORETYPE");
  k.in_use = openblas_get_corename();
  return k;
}

// At load, while one thread runs; blas_kernels() makes it first if another static initializer
// gets there before this one.
[[maybe_unused]] const BlasKernels& settled_at_load = blas_kernels();

}  // namespace

SimdLevel cpu_simd_level() {
#if defined(__x86_64__)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512cd") &&
      __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq") &&
      __builtin_cpu_supports("avx512vl"))
    return SimdLevel::Avx512;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return SimdLevel::Avx2;
  if (__builtin_cpu_supports("avx")) return SimdLevel::Avx;
  return SimdLevel::Sse;
#else
  return SimdLevel::Unknown;
#endif
}

SimdLevel openblas_core_level(std::string_view core) {
  for (const auto& [name, level] : kOpenblasCores)
    if (core.size() == std::string_view(name).size() &&
        strncasecmp(core.data(), name, core.size()) == 0)
      return level;
  return SimdLevel::Unknown;
}

std::optional<std::string> better_openblas_core(std::string_view chosen, SimdLevel cpu,
                                                bool amd) {
  const SimdLevel have = openblas_core_level(chosen);
  if (have == SimdLevel::Unknown || cpu <= have) return std::nullopt;
  switch (cpu) {
    case SimdLevel::Avx512: return "SkylakeX";
    case SimdLevel::Avx2: return amd ? "Zen" : "Haswell";
    case SimdLevel::Avx: return "Sandybridge";
    default: return std::nullopt;
  }
}

std::string BlasKernels::describe() const {
  if (openblas_choice.empty()) return "";
  std::string s = "OpenBLAS " + in_use + " kernels";
  if (user_choice) return s + " (OPENBLAS_CORETYPE)";
  if (in_use != openblas_choice)
    s += " (OpenBLAS chose " + openblas_choice + ", below this CPU's instruction set)";
  return s;
}

const BlasKernels& blas_kernels() {
  static const BlasKernels k = settle();
  return k;
}

}  // namespace loom::cpu
