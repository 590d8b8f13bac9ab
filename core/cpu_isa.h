// The x86 instruction set loom's own CPU code was compiled for (CMake option LOOM_CPU_ARCH,
// x86-64-v3 by default), checked against the running CPU so that a machine without it gets an
// error naming the option instead of an illegal instruction.
#pragma once

namespace loom {

/// Throws loom::Error when this CPU lacks the x86-64 level (v2, v3 or v4) loom was built for;
/// the check runs once, at the first host allocation. A build for "native", the baseline or
/// another architecture checks nothing.
void require_cpu_isa();

}  // namespace loom
