// Shared test helpers: closeness checks, GPU skipping, golden files, finite-difference gradients.
#pragma once
#include <gtest/gtest.h>

#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace loom::testing {

/// Skips the current test (reported as skipped) when no GPU is usable.
#define LOOM_REQUIRE_GPU()                                                        \
  do {                                                                            \
    if (!::loom::cuda_available()) GTEST_SKIP() << "no GPU available: skipped"; \
  } while (0)

/// |a - e| <= atol + rtol * |e| elementwise (compared in float64 on the host); NaNs match NaNs,
/// infinities must match exactly. Shapes must be equal.
::testing::AssertionResult allclose(const Tensor& actual, const Tensor& expected, double rtol,
                                    double atol);
#define EXPECT_ALLCLOSE(actual, expected, rtol, atol) \
  EXPECT_TRUE(::loom::testing::allclose((actual), (expected), (rtol), (atol)))

/// Asserts that `stmt` throws ErrorType whose message contains every one of the given parts
/// (string literals or std::strings); any other exception is reported as a failure.
#define EXPECT_THROW_WITH(stmt, ErrorType, ...)                                            \
  do {                                                                                     \
    try {                                                                                  \
      stmt;                                                                                \
      ADD_FAILURE() << "expected " #ErrorType " from: " #stmt;                            \
    } catch (const ErrorType& e_) {                                                        \
      for (const std::string& part_ : std::vector<std::string>{__VA_ARGS__})               \
        EXPECT_NE(std::string(e_.what()).find(part_), std::string::npos)                   \
            << "message '" << e_.what() << "' lacks '" << part_ << "'";                    \
    } catch (const std::exception& e_) {                                                   \
      ADD_FAILURE() << "expected " #ErrorType " from: " #stmt << ", got: " << e_.what(); \
    }                                                                                      \
  } while (0)

/// Reads tests/golden/<name> as JSON.
nlohmann::json load_golden(const std::string& name);
/// The entry of `file`'s "cases" array whose "name" is `name` (the file is read once).
const nlohmann::json& golden_case(const std::string& file, const std::string& name);
/// A golden array {"shape": [...], "dtype": "float32", "data": [...]} as a CPU tensor, denormal
/// floats included.
Tensor golden_tensor(const nlohmann::json& j);

/// Central-difference gradient check in float64: compares the autodiff gradient of
/// f(inputs...) (a scalar) with respect to each input against (f(x+eps) - f(x-eps)) / 2eps.
/// Inputs must be F64 CPU tensors. Default tolerances follow the issue: atol 1e-5, rtol 1e-3.
::testing::AssertionResult check_gradients(
    const std::function<Tensor(const std::vector<Tensor>&)>& f, const std::vector<Tensor>& inputs,
    double eps = 1e-6, double atol = 1e-5, double rtol = 1e-3);

/// Gradients of sum(f(inputs) * ct) with respect to every input (the vjp of ct), on the inputs'
/// device; ct is cast to f's output dtype.
std::vector<Tensor> vjp(const std::function<Tensor(const std::vector<Tensor>&)>& f,
                        const std::vector<Tensor>& inputs, const Tensor& ct);

/// The largest finite |value| of t, at least 1: the scale of an absolute tolerance for sums,
/// which round by the size of their terms rather than by each result's own size.
double largest_magnitude(const Tensor& t);

/// Deterministic pseudo-random F64 values in [lo, hi) for test inputs (not JAX's generator).
Tensor test_values(Shape shape, uint64_t seed, double lo = -1.0, double hi = 1.0,
                   DType dtype = DType::F64);

}  // namespace loom::testing
