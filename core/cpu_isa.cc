// Compiled for the x86-64 baseline (CMakeLists.txt), whatever LOOM_CPU_ARCH is, so that the
// check itself runs on any x86-64 CPU.
#include "core/cpu_isa.h"

#include "core/error.h"

#ifndef LOOM_X86_LEVEL
#define LOOM_X86_LEVEL 0  // not built for an x86-64 level: nothing to check
#endif

namespace loom {
namespace {

bool cpu_has_build_level() {
#if LOOM_X86_LEVEL == 2
  return __builtin_cpu_supports("x86-64-v2");
#elif LOOM_X86_LEVEL == 3
  return __builtin_cpu_supports("x86-64-v3");
#elif LOOM_X86_LEVEL == 4
  return __builtin_cpu_supports("x86-64-v4");
#else
  return true;
#endif
}

}  // namespace

void require_cpu_isa() {
  static const bool ok = cpu_has_build_level();
  LOOM_CHECK(ok, Error, "this CPU lacks the instruction set loom was built for (x86-64-v",
             LOOM_X86_LEVEL, ": ",
             LOOM_X86_LEVEL >= 3 ? "AVX2 and FMA" : "SSE4.2 and POPCNT",
             LOOM_X86_LEVEL >= 4 ? " and AVX-512" : "",
             "); rebuild loom with -DLOOM_CPU_ARCH=x86-64 (any x86-64 CPU) or native");
}

}  // namespace loom
