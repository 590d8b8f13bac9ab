// Schedules against real Optax (tests/golden/optax_schedules.json: values at steps 0..120), host
// evaluation against tensor evaluation, and argument errors.
#include <gtest/gtest.h>

#include <cmath>

#include "core/ops/elementwise.h"
#include "optim/schedules.h"
#include "tests/optim/optax_golden.h"

namespace loom::optim {
namespace {

std::vector<std::pair<std::string, Schedule>> schedule_cases() {
  return {
      {"constant", constant_schedule(0.3)},
      {"linear", linear_schedule(1.0, 0.1, 50, 10)},
      {"polynomial", polynomial_schedule(0.5, 0.01, 2, 80, 5)},
      {"polynomial_frac_power", polynomial_schedule(0.5, 0.01, 1.5, 80)},
      {"cosine_decay", cosine_decay_schedule(0.1, 60)},
      {"cosine_decay_alpha_exponent", cosine_decay_schedule(0.1, 60, 0.1, 2.0)},
      {"warmup_cosine_decay", warmup_cosine_decay_schedule(0.0, 0.05, 10, 100, 0.001)},
      {"exponential_decay", exponential_decay(0.1, 10, 0.5)},
      {"exponential_decay_staircase_end", exponential_decay(0.1, 7, 0.5, 5, true, 0.01)},
      {"exponential_growth_end", exponential_decay(0.01, 10, 2.0, 0, false, 0.5)},
      {"piecewise_constant", piecewise_constant_schedule(0.1, {{30, 0.5}, {60, 0.1}, {90, 2.0}})},
      {"join_schedules", join_schedules({constant_schedule(0.1), linear_schedule(0.1, 0.0, 40),
                                         constant_schedule(0.02)},
                                        {20, 70})},
      {"cosine_onecycle", cosine_onecycle_schedule(100, 0.2)},
      {"cosine_onecycle_custom", cosine_onecycle_schedule(80, 1.0, 0.25, 10.0, 100.0)},
      {"warmup_exponential_decay", warmup_exponential_decay_schedule(0.0, 0.1, 10, 20, 0.5, 5, true, 0.005)},
  };
}

TEST(Schedules, MatchOptax) {
  const auto& golden = testing::optax_schedules_golden();
  int64_t n = golden.at("steps").get<int64_t>();
  auto cases = schedule_cases();
  EXPECT_EQ(cases.size(), golden.at("values").size());
  for (const auto& [name, s] : cases) {
    SCOPED_TRACE(name);
    Tensor expected = testing::golden_tensor(golden.at("values").at(name));
    std::vector<float> got;
    for (int64_t i = 0; i < n; ++i) {
      Tensor v = s(scalar(double(i), DType::I32));
      EXPECT_EQ(v.dtype(), DType::F32);
      EXPECT_EQ(v.ndim(), 0);
      got.push_back(v.item<float>());
    }
    EXPECT_ALLCLOSE(from_vector(got, {n}), expected, 1e-6, 1e-9);
  }
}

TEST(Schedules, HostEvaluationEqualsTensorEvaluation) {
  for (const auto& [name, s] : schedule_cases()) {
    SCOPED_TRACE(name);
    for (int64_t step : {0, 1, 9, 10, 11, 37, 100, 1000})
      EXPECT_EQ(s(step), s(scalar(double(step), DType::I32)).item<double>());
  }
}

TEST(Schedules, LambdasAreSchedules) {
  Schedule s = [](const Tensor& count) { return count.to(DType::F32) * 0.5; };
  EXPECT_EQ(s(int64_t(4)), 2.0);
  Schedule ints = [](const Tensor& count) { return count + 1.0; };  // integer results: float32
  EXPECT_EQ(ints(scalar(2, DType::I32)).dtype(), DType::F32);
  ScalarOrSchedule lr = [](const Tensor& c) { return c.to(DType::F32); };
  EXPECT_TRUE(lr.is_schedule());
  EXPECT_TRUE(ScalarOrSchedule(3).is_constant());
  EXPECT_TRUE(ScalarOrSchedule(scalar(0.1)).is_tensor());
}

TEST(Schedules, EdgeCasesFollowOptax) {
  // Non-positive transition steps give a constant init; a negative begin counts as 0.
  EXPECT_EQ(linear_schedule(0.5, 0.0, 0)(int64_t(7)), float(0.5));
  EXPECT_EQ(linear_schedule(1.0, 0.0, 10, -5)(int64_t(5)), float(0.5));
  EXPECT_EQ(exponential_decay(0.5, 0, 0.1)(int64_t(50)), float(0.5));
  EXPECT_EQ(exponential_decay(0.5, 10, 0.0)(int64_t(50)), float(0.5));
  EXPECT_NEAR(cosine_decay_schedule(1.0, 10)(int64_t(5)), 0.5, 1e-7);
  EXPECT_EQ(cosine_decay_schedule(1.0, 10)(int64_t(50)), 0.0);  // clamped at decay_steps
}

TEST(Schedules, Errors) {
  EXPECT_THROW(cosine_decay_schedule(0.1, 0), ValueError);
  EXPECT_THROW(join_schedules({constant_schedule(1)}, {5}), ValueError);
  EXPECT_THROW(piecewise_constant_schedule(0.1, {{10, -1.0}}), ValueError);
  EXPECT_THROW(cosine_onecycle_schedule(0, 1.0), ValueError);
  EXPECT_THROW(constant_schedule(1)(int64_t(-1)), ValueError);
  try {
    cosine_decay_schedule(0.1, -3);
  } catch (const ValueError& e) {
    EXPECT_NE(std::string(e.what()).find("cosine_decay_schedule"), std::string::npos);
  }
}

}  // namespace
}  // namespace loom::optim
