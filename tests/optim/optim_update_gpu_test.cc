// The fused CUDA updates against the CPU (fused and composed), the composed transforms and
// schedules on the GPU against the CPU, and the Optax goldens replayed on the GPU.
#include <gtest/gtest.h>

#include "core/ops/elementwise.h"
#include "core/ops/shape.h"
#include "optim/optim.h"
#include "tests/optim/optax_golden.h"
#include "train/train_state.h"

namespace loom::optim {
namespace {

Tree to_device(const Tree& t, Device d) {
  return tree_map([&](const Tensor& x) { return x.to(d); }, t);
}

// Many leaves (more than one launch's table holds), empty and large ones.
Tree many_leaves(uint64_t seed, double scale = 1.0) {
  Tree t;
  for (int i = 0; i < 230; ++i) {
    Shape shape = i % 50 == 7 ? Shape{0} : Shape{int64_t(1 + (i * 7) % 33), 3};
    std::string name = "p";  // (not "p" + to_string: GCC 12's -Wrestrict false positive)
    name += std::to_string(i);
    t.insert(name, (testing::test_values(shape, seed + uint64_t(i)) * scale).to(DType::F32));
  }
  t.insert("large", (testing::test_values({300000}, seed + 999) * scale).to(DType::F32));
  return t;
}

::testing::AssertionResult close_trees(const Tree& gpu, const Tree& cpu, double rtol, double atol) {
  if (!gpu.same_structure(cpu)) return ::testing::AssertionFailure() << "structure differs at " << gpu.first_difference(cpu);
  for (const auto& [path, x] : cpu.flatten()) {
    auto r = testing::allclose(gpu.at(path).tensor().to(Device::cpu()), x, rtol, atol);
    if (!r) return ::testing::AssertionFailure() << path << ": " << r.message();
  }
  return ::testing::AssertionSuccess();
}

std::vector<std::pair<const char*, std::function<GradientTransformation()>>> fused_cases() {
  return {
      {"sgd", [] { return sgd(0.1); }},
      {"sgd momentum", [] { return sgd(0.1, 0.9); }},
      {"sgd nesterov schedule", [] { return sgd(cosine_decay_schedule(0.1, 5), 0.9, true); }},
      {"adam", [] { return adam(1e-2); }},
      {"nadam schedule", [] { return nadam(warmup_cosine_decay_schedule(0, 1e-2, 2, 10)); }},
      {"adamw", [] { return adamw(1e-2, {.weight_decay = 0.05}); }},
      {"adamw mask", [] {
         return adamw(1e-2, {.weight_decay = 0.05, .mask = [](const Tree& p) {
                               return mask_where(p, [](const std::string& path, const Tensor&) {
                                 return path != "large";
                               });
                             }});
       }},
  };
}

TEST(FusedUpdatesGpu, CudaEqualsCpu) {
  LOOM_REQUIRE_GPU();
  Device gpu = Device::cuda();
  for (const auto& [name, make] : fused_cases()) {
    SCOPED_TRACE(name);
    GradientTransformation tx = make();
    Tree p_cpu = many_leaves(1), p_gpu = to_device(p_cpu, gpu);
    Tree s_cpu = tx.init(p_cpu), s_gpu = tx.init(p_gpu);
    for (int step = 0; step < 5; ++step) {
      Tree g = many_leaves(100 + uint64_t(step) * 1000, 0.3);
      std::tie(p_cpu, s_cpu) = update_and_apply(tx, g, s_cpu, p_cpu);
      std::tie(p_gpu, s_gpu) = update_and_apply(tx, to_device(g, gpu), s_gpu, p_gpu);
    }
    for (const auto& [path, leaf] : s_gpu.flatten())
      EXPECT_TRUE(leaf.is_cuda()) << path << " left the GPU";
    EXPECT_TRUE(close_trees(p_gpu, p_cpu, 1e-5, 1e-7));
    EXPECT_TRUE(close_trees(s_gpu, s_cpu, 1e-5, 1e-7));
  }
}

// The kernels move 16-byte packs where all of a leaf's pointers allow it and single floats
// elsewhere: leaves that start 0 to 3 floats into a buffer (params and grads at different
// offsets), with sizes that leave 0 to 3 floats over a multiple of 4, equal the CPU.
TEST(FusedUpdatesGpu, LeavesAtEveryAlignmentEqualCpu) {
  LOOM_REQUIRE_GPU();
  Device gpu = Device::cuda();
  Tensor p_buffer = testing::test_values({40000}, 11).to(DType::F32).to(gpu);
  Tensor g_buffer = (testing::test_values({40000}, 12) * 0.3).to(DType::F32).to(gpu);
  Tree p_gpu, g_gpu;
  int64_t at = 0;
  for (int64_t offset = 0; offset < 4; ++offset)
    for (int64_t extra = 0; extra < 4; ++extra) {
      const int64_t n = 1000 + 4 * offset + extra;
      std::string name = "o";
      name += std::to_string(offset) + "_" + std::to_string(extra);
      p_gpu.insert(name, slice_axis(p_buffer, 0, at + offset, at + offset + n));
      const int64_t g_offset = offset * 2 % 4;  // both aligned only at offset 0
      g_gpu.insert(name, slice_axis(g_buffer, 0, at + g_offset, at + g_offset + n));
      at += 2048;
    }
  for (auto make : {+[] { return adamw(1e-2, {.weight_decay = 0.05}); },
                    +[] { return sgd(0.1, 0.9, true); }}) {
    GradientTransformation tx = make();
    Tree p_cpu = to_device(p_gpu, Device::cpu()), g_cpu = to_device(g_gpu, Device::cpu());
    auto [p1_gpu, s1_gpu] = update_and_apply(tx, g_gpu, tx.init(p_gpu), p_gpu);
    auto [p1_cpu, s1_cpu] = update_and_apply(tx, g_cpu, tx.init(p_cpu), p_cpu);
    EXPECT_TRUE(close_trees(p1_gpu, p1_cpu, 1e-6, 1e-9));
    EXPECT_TRUE(close_trees(s1_gpu, s1_cpu, 1e-6, 1e-9));
  }
}

TEST(FusedUpdatesGpu, FusedEqualsComposedOnTheGpu) {
  LOOM_REQUIRE_GPU();
  Device gpu = Device::cuda();
  for (const auto& [name, make] : fused_cases()) {
    SCOPED_TRACE(name);
    GradientTransformation tx = make();
    Tree p0 = to_device(many_leaves(2), gpu);
    Tree g = to_device(many_leaves(3, 0.3), gpu);
    Tree s0 = tx.init(p0);
    auto [p_fused, s_fused] = update_and_apply(tx, g, s0, p0);
    auto [u_fused, s_fused_update] = tx.update(g, s0, p0);
    set_fused_updates_enabled(false);
    auto [u_composed, s_composed] = tx.update(g, s0, p0);
    set_fused_updates_enabled(true);
    // Explicitly rounded float32 in both; only powf in the bias corrections may differ.
    Device cpu = Device::cpu();
    EXPECT_TRUE(close_trees(u_fused, to_device(u_composed, cpu), 1e-6, 1e-9));
    EXPECT_TRUE(close_trees(p_fused, to_device(apply_updates(p0, u_composed), cpu), 1e-6, 1e-9));
    EXPECT_TRUE(close_trees(s_fused, to_device(s_composed, cpu), 1e-6, 1e-9));
    EXPECT_TRUE(close_trees(s_fused_update, to_device(s_composed, cpu), 1e-6, 1e-9));
  }
}

TEST(OptaxParityGpu, GoldensOnTheGpu) {
  LOOM_REQUIRE_GPU();
  testing::GoldenRunOptions o;
  o.device = Device::cuda();
  // CUDA's powf / cosf may differ from glibc's in the last bit (bias corrections, Adafactor's
  // x^-0.5, schedules), so the GPU runs get a few ulps more room than the CPU's 1e-6.
  auto matches_optax = [](const std::string& name, const GradientTransformation& tx,
                          const testing::GoldenRunOptions& opts) {
    return testing::matches_optax(name, tx, opts, 5e-6, 1e-7);
  };
  EXPECT_TRUE(matches_optax("adamw", adamw(1e-2), o));
  EXPECT_TRUE(matches_optax("sgd_nesterov", sgd(0.05, 0.9, true), o));
  EXPECT_TRUE(matches_optax("adam_schedule", adam(warmup_cosine_decay_schedule(0.0, 0.05, 10, 100, 0.001)), o));
  EXPECT_TRUE(matches_optax("rmsprop_centered_momentum", rmsprop(1e-2, {.centered = true, .momentum = 0.9}), o));
  EXPECT_TRUE(matches_optax("adafactor_factored",
                                     adafactor(1e-2, {.min_dim_size_to_factor = 2, .momentum = 0.9,
                                                      .weight_decay_rate = 1e-3}), o));
  EXPECT_TRUE(matches_optax("multi_steps", multi_steps(adam(1e-2), 3), o));
  testing::GoldenRunOptions bad = o;
  bad.bad_grads = true;
  EXPECT_TRUE(matches_optax("apply_if_finite", apply_if_finite(adam(1e-2), 2), bad));
}

TEST(SchedulesGpu, DeviceCountGivesTheCpuValues) {
  LOOM_REQUIRE_GPU();
  std::vector<Schedule> schedules = {warmup_cosine_decay_schedule(0, 0.1, 10, 100, 1e-3),
                                     cosine_onecycle_schedule(100, 0.2),
                                     exponential_decay(0.1, 7, 0.5, 5, true, 0.01),
                                     piecewise_constant_schedule(0.1, {{30, 0.5}, {60, 0.1}})};
  for (size_t k = 0; k < schedules.size(); ++k) {
    SCOPED_TRACE(k);
    for (int step : {0, 5, 10, 31, 64, 99, 150}) {
      Tensor v = schedules[k](scalar(step, DType::I32, Device::cuda()));
      EXPECT_TRUE(v.is_cuda());
      EXPECT_NEAR(v.item<double>(), schedules[k](int64_t(step)), 1e-7 + 1e-6 * std::abs(schedules[k](int64_t(step))));
    }
  }
}

TEST(TrainStateGpu, StepsStayOnTheDevice) {
  LOOM_REQUIRE_GPU();
  Tree params = to_device(many_leaves(5), Device::cuda());
  train::TrainState s = train::TrainState::create(params, adamw(1e-3));
  Tree g = to_device(many_leaves(6, 0.1), Device::cuda());
  for (int i = 0; i < 3; ++i) s = s.apply_gradients(g);
  EXPECT_TRUE(s.step.is_cuda());
  EXPECT_EQ(s.step_value(), 3);
  EXPECT_EQ(s.opt_state["0"]["count"].tensor().item<int>(), 3);
}

}  // namespace
}  // namespace loom::optim
