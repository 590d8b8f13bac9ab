// Compiled for the x86-64 baseline (CMakeLists.txt): it runs before main, before the check that
// the CPU has the instruction set the rest of loom was built for.
#include "kernels/cpu/denormals.h"

#include <cstdlib>
#include <cstring>
#include <iostream>

#if defined(__x86_64__) || defined(__i386__)
#include <xmmintrin.h>
#endif

namespace loom::cpu {
namespace {

#if defined(__x86_64__) || defined(__i386__)
constexpr unsigned kFlushToZero = 0x8000;     // MXCSR.FTZ: denormal results become 0
constexpr unsigned kDenormalsAreZero = 0x40;  // MXCSR.DAZ: denormal inputs read as 0
constexpr unsigned kBoth = kFlushToZero | kDenormalsAreZero;

bool this_thread_flushes() { return (_mm_getcsr() & kBoth) == kBoth; }
void set_this_thread(bool on) { _mm_setcsr(on ? _mm_getcsr() | kBoth : _mm_getcsr() & ~kBoth); }
#elif defined(__aarch64__)
constexpr unsigned long kFlushToZero = 1ul << 24;  // FPCR.FZ: both directions

unsigned long fpcr() {
  unsigned long v;
  __asm__ volatile("mrs %0, fpcr" : "=r"(v));
  return v;
}
bool this_thread_flushes() { return (fpcr() & kFlushToZero) != 0; }
void set_this_thread(bool on) {
  unsigned long v = on ? fpcr() | kFlushToZero : fpcr() & ~kFlushToZero;
  __asm__ volatile("msr fpcr, %0" : : "r"(v));
}
#else
bool this_thread_flushes() { return false; }
void set_this_thread(bool) {}
#endif

bool settle() {
  const char* env = std::getenv("LOOM_FLUSH_DENORMALS");
  bool on = true;
  if (env && std::strcmp(env, "0") == 0) on = false;
  else if (env && std::strcmp(env, "1") != 0)
    std::cerr << "loom: LOOM_FLUSH_DENORMALS=" << env
              << " is neither 0 nor 1; the CPU flushes denormal floats to zero\n";
  // Only this thread: OpenMP's threads start later, from it, and a parallel region here would
  // start them before main.
  set_this_thread(on);
  return this_thread_flushes();
}

// At load, while one thread runs; flush_denormals_at_load() makes it first if another static
// initializer gets there before this one.
[[maybe_unused]] const bool settled_at_load = flush_denormals_at_load();

}  // namespace

bool flushes_denormals() { return this_thread_flushes(); }

void set_flush_denormals(bool on) {
#pragma omp parallel  // the calling thread is one of the team
  set_this_thread(on);
}

bool flush_denormals_at_load() {
  static const bool on = settle();
  return on;
}

}  // namespace loom::cpu
