#include "tests/support/testing.h"

#include <cmath>
#include <fstream>
#include <map>
#include <random>
#include <sstream>
#include <stdexcept>

#include "core/autodiff.h"
#include "core/device.h"
#include "core/ops/elementwise.h"
#include "core/ops/reduce.h"

namespace loom::testing {

::testing::AssertionResult allclose(const Tensor& actual, const Tensor& expected, double rtol,
                                    double atol) {
  if (actual.shape() != expected.shape())
    return ::testing::AssertionFailure() << "shape " << shape_str(actual.shape()) << " != expected "
                                         << shape_str(expected.shape());
  std::vector<double> a = actual.to_vector<double>(), e = expected.to_vector<double>();
  size_t bad = 0, first = 0;
  double worst = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    bool ok;
    if (std::isnan(e[i])) ok = std::isnan(a[i]);
    else if (std::isinf(e[i])) ok = a[i] == e[i];
    else ok = std::abs(a[i] - e[i]) <= atol + rtol * std::abs(e[i]);
    if (!ok) {
      if (bad++ == 0) first = i;
      worst = std::max(worst, std::abs(a[i] - e[i]));
    }
  }
  if (bad == 0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << bad << " of " << a.size() << " elements differ (rtol " << rtol << ", atol " << atol
         << "); first at flat index " << first << ": actual " << a[first] << " expected "
         << e[first] << "; largest difference " << worst;
}

nlohmann::json load_golden(const std::string& name) {
  std::string path = std::string(LOOM_GOLDEN_DIR) + "/" + name;
  std::ifstream in(path);
  if (!in) throw IOError("cannot open golden file " + path);
  return nlohmann::json::parse(in);
}

const nlohmann::json& golden_case(const std::string& file, const std::string& name) {
  static std::map<std::string, nlohmann::json> docs;  // node-based: references stay valid
  auto it = docs.find(file);
  if (it == docs.end()) it = docs.emplace(file, load_golden(file)).first;
  for (const auto& c : it->second.at("cases"))
    if (c.at("name") == name) return c;
  throw std::runtime_error("no golden case " + name);
}

double largest_magnitude(const Tensor& t) {
  double m = 1.0;
  for (double v : t.to_vector<double>()) m = std::isfinite(v) ? std::max(m, std::fabs(v)) : m;
  return m;
}

Tensor golden_tensor(const nlohmann::json& j) {
  Shape shape = j.at("shape").get<Shape>();
  DType dtype = dtype_from_name(j.at("dtype").get<std::string>());
  std::vector<double> values;
  for (const auto& v : j.at("data")) {
    if (v.is_string()) {  // "nan", "inf", "-inf"
      std::string s = v.get<std::string>();
      values.push_back(s == "nan" ? NAN : s == "inf" ? INFINITY : -INFINITY);
    } else {
      values.push_back(v.get<double>());
    }
  }
  if (dtype == DType::U32 || dtype == DType::I64 || dtype == DType::I32) {
    std::vector<int64_t> ints;
    for (const auto& v : j.at("data")) ints.push_back(v.get<int64_t>());
    return from_vector(ints, shape).to(dtype);
  }
  // Exactly the recorded values: a denormal float stays one, though loom's CPU flushes them.
  const bool flushing = cpu_flushes_denormals();
  set_cpu_flush_denormals(false);
  Tensor t = from_vector(values, shape).to(dtype);
  set_cpu_flush_denormals(flushing);
  return t;
}

::testing::AssertionResult check_gradients(
    const std::function<Tensor(const std::vector<Tensor>&)>& f, const std::vector<Tensor>& inputs,
    double eps, double atol, double rtol) {
  std::vector<Tensor> leaves;
  for (size_t i = 0; i < inputs.size(); ++i) {
    if (inputs[i].dtype() != DType::F64 || inputs[i].is_cuda())
      return ::testing::AssertionFailure() << "check_gradients needs F64 CPU inputs";
    leaves.push_back(autograd::make_leaf(inputs[i], int64_t(i)));
  }
  std::vector<Tensor> grads;
  {
    autograd::RecordingGuard rec(true);
    Tensor out = f(leaves);
    grads = autograd::backward(out, leaves);
  }
  auto eval = [&](const std::vector<Tensor>& xs) { return f(xs).item<double>(); };
  for (size_t i = 0; i < inputs.size(); ++i) {
    std::vector<double> base = inputs[i].to_vector<double>();
    std::vector<double> numeric(base.size());
    for (size_t k = 0; k < base.size(); ++k) {
      std::vector<Tensor> xs = inputs;
      std::vector<double> v = base;
      v[k] = base[k] + eps;
      xs[i] = from_vector(v, inputs[i].shape());
      double fp = eval(xs);
      v[k] = base[k] - eps;
      xs[i] = from_vector(v, inputs[i].shape());
      double fm = eval(xs);
      numeric[k] = (fp - fm) / (2 * eps);
    }
    auto r = allclose(grads[i], from_vector(numeric, inputs[i].shape()), rtol, atol);
    if (!r) return ::testing::AssertionFailure() << "gradient of input " << i << ": " << r.message();
  }
  return ::testing::AssertionSuccess();
}

std::vector<Tensor> vjp(const std::function<Tensor(const std::vector<Tensor>&)>& f,
                        const std::vector<Tensor>& inputs, const Tensor& ct) {
  std::vector<Tensor> leaves;
  for (size_t i = 0; i < inputs.size(); ++i) leaves.push_back(autograd::make_leaf(inputs[i], int64_t(i)));
  autograd::RecordingGuard rec(true);
  Tensor y = f(leaves);
  return autograd::backward(sum(y * ct.to(y.dtype())), leaves);
}

Tensor test_values(Shape shape, uint64_t seed, double lo, double hi, DType dtype) {
  std::mt19937_64 gen(seed);
  std::uniform_real_distribution<double> dist(lo, hi);
  std::vector<double> v(size_t(shape_numel(shape)));
  for (double& x : v) x = dist(gen);
  return from_vector(v, std::move(shape)).to(dtype);
}

}  // namespace loom::testing
