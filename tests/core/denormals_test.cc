// kernels/cpu/denormals.h: loom's CPU threads flush denormal floats to zero from load on, as
// JAX's CPU backend does: the calling thread, OpenMP's threads and threads started later; and
// set_cpu_flush_denormals(false) keeps them on all of those.
#include <gtest/gtest.h>

#include <bit>
#include <cfloat>
#include <cstdint>
#include <thread>

#include <omp.h>

#include "core/device.h"
#include "core/ops/elementwise.h"
#include "core/ops/reduce.h"
#include "kernels/cpu/denormals.h"
#include "optim/optim.h"
#include "tests/support/testing.h"

namespace loom {
namespace {

// Volatile: computed at run time, under the thread's mode, not folded by the compiler.
float denormal_result() {  // FTZ: a result below FLT_MIN becomes 0
  volatile float x = FLT_MIN;
  return x * 0.5f;
}
float denormal_input() {  // DAZ: a denormal operand reads as 0
  volatile float x = std::bit_cast<float>(uint32_t{0x00400000});
  return x * 1.0f;
}
bool this_thread_keeps_denormals() { return denormal_result() != 0 && denormal_input() != 0; }
bool this_thread_flushes_denormals() { return denormal_result() == 0 && denormal_input() == 0; }

int openmp_threads_flushing(bool flushing) {
  int count = 0;
#pragma omp parallel reduction(+ : count)
  count += flushing ? this_thread_flushes_denormals() : this_thread_keeps_denormals();
  return count;
}

bool new_thread_flushing(bool flushing) {
  bool result = false;
  std::thread([&] {
    result = flushing ? this_thread_flushes_denormals() : this_thread_keeps_denormals();
  }).join();
  return result;
}

struct RestoreMode {
  ~RestoreMode() { set_cpu_flush_denormals(cpu::flush_denormals_at_load()); }
};

TEST(Denormals, FlushedFromLoadOnEveryThread) {
  ASSERT_TRUE(cpu::flush_denormals_at_load()) << "run without LOOM_FLUSH_DENORMALS=0";
  EXPECT_TRUE(cpu_flushes_denormals());
  EXPECT_TRUE(this_thread_flushes_denormals());
  EXPECT_EQ(openmp_threads_flushing(true), omp_get_max_threads());
  EXPECT_TRUE(new_thread_flushing(true));
}

TEST(Denormals, CanBeKeptOnEveryThread) {
  RestoreMode restore;
  openmp_threads_flushing(true);  // OpenMP's threads exist before the mode changes
  set_cpu_flush_denormals(false);
  EXPECT_FALSE(cpu_flushes_denormals());
  EXPECT_TRUE(this_thread_keeps_denormals());
  EXPECT_EQ(openmp_threads_flushing(false), omp_get_max_threads());
  EXPECT_TRUE(new_thread_flushing(false));
  set_cpu_flush_denormals(true);
  EXPECT_TRUE(this_thread_flushes_denormals());
  EXPECT_EQ(openmp_threads_flushing(true), omp_get_max_threads());
}

// What made the CPU main job slow: Adam's first moment of a tiny gradient is 0, as in JAX on the
// CPU, instead of a denormal that every later step reads and shrinks.
TEST(Denormals, AdamsMomentsFlushToZero) {
  RestoreMode restore;
  Tree params;
  params.insert("w", zeros({1024}));
  Tree grads;
  grads.insert("w", full({1024}, 4 * FLT_MIN));  // (1 - b1) * g = 0.4 FLT_MIN: denormal
  optim::GradientTransformation tx = optim::adam(1e-3);
  for (bool flush : {true, false}) {
    set_cpu_flush_denormals(flush);
    auto [updates, state] = tx.update(grads, tx.init(params), params);
    const float mu = max(abs(state["0"]["mu"]["w"].tensor())).item<float>();
    if (flush) {
      EXPECT_EQ(mu, 0.0f);
    } else {
      EXPECT_GT(mu, 0.0f);
      EXPECT_LT(mu, FLT_MIN);
    }
  }
}

}  // namespace
}  // namespace loom
