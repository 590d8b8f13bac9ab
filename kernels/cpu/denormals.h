// Denormal floats on the CPU. loom's CPU threads flush them to zero, as JAX's CPU backend (XLA)
// and TensorFlow do: on x86 an operation that reads or makes a float below 1.2e-38 takes a
// microcode assist of ~100 cycles, and training makes such floats. AdamW's first moment of a
// weight whose gradient stays 0 shrinks by 0.9 a step and is denormal ~700 steps later: the main
// job's step grew from 43 to 50 ms by its second epoch (docs/PERF.md, session 19). Flushed, the
// result is 0, as JAX's is on the CPU.
//
// The mode belongs to a thread, and a thread starts with its creator's. loom sets it at load,
// before main, on the thread that loads it, so OpenMP's threads (which run loom's loops and
// OpenBLAS's products) and the loader's start with it. LOOM_FLUSH_DENORMALS=0 keeps denormals.
#pragma once

namespace loom::cpu {

/// Whether the calling thread flushes denormal results to zero and reads denormal inputs as
/// zero (x86: MXCSR's FTZ and DAZ bits; AArch64: FPCR.FZ). False where the CPU has no such mode.
bool flushes_denormals();

/// Sets the mode of the calling thread and of OpenMP's threads.
void set_flush_denormals(bool on);

/// The mode loom set at load: true unless LOOM_FLUSH_DENORMALS=0 (or the CPU has no such mode).
bool flush_denormals_at_load();

}  // namespace loom::cpu
