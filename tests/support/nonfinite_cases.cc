#include "tests/support/nonfinite_cases.h"

#include <functional>
#include <map>
#include <string>

#include <gtest/gtest.h>

#include "core/ops/attention.h"
#include "core/ops/conv.h"
#include "core/ops/elementwise.h"
#include "core/ops/linalg.h"
#include "core/ops/loss.h"
#include "core/ops/pool.h"
#include "core/ops/reduce.h"
#include "core/ops/softmax.h"
#include "optim/optimizers.h"
#include "optim/transform.h"
#include "optim/transforms.h"
#include "tests/support/testing.h"

namespace loom::testing {
namespace {

using Fn = std::function<Tensor(const std::vector<Tensor>&)>;

/// The op of each golden case, on its inputs in the case's order (the JSON's names sorted);
/// `labels` is the case's label array where it has one (attention's mask).
std::map<std::string, Fn> ops(const Tensor& labels) {
  auto unary = [](Tensor (*f)(const Tensor&)) { return Fn([f](const auto& in) { return f(in[0]); }); };
  auto binary = [](Tensor (*f)(const Tensor&, const Tensor&)) {
    return Fn([f](const auto& in) { return f(in[0], in[1]); });
  };
  auto call = [](auto f) { return Fn([f](const auto& in) { return f(in[0]); }); };
  const Shape window{2, 2};
  // One step of an optimizer (its fused form where it has one, as training runs it); the
  // inputs sorted: grads, params.
  auto step = [](optim::GradientTransformation tx) {
    return Fn([tx](const auto& in) {
      Tree params, grads;
      params.insert("w", in[1]);
      grads.insert("w", in[0]);
      return optim::update_and_apply(tx, grads, tx.init(params), params).first["w"].tensor();
    });
  };
  std::map<std::string, Fn> table;
  for (const char* kind : {"_nan", "_inf"}) {
    const std::string k = kind;
    table["optimizer_sgd" + k] = step(optim::sgd(0.1));
    table["optimizer_momentum" + k] = step(optim::sgd(0.1, 0.9));
    table["optimizer_adam" + k] = step(optim::adam(0.1));
    table["optimizer_adamw" + k] = step(optim::adamw(0.1, {.weight_decay = 0.1}));
    table["optimizer_clip_sgd" + k] =
        step(optim::chain(optim::clip_by_global_norm(1.0), optim::sgd(0.1)));
    table["optimizer_rmsprop" + k] = step(optim::rmsprop(0.1));
    table["optimizer_lamb" + k] = step(optim::lamb(0.1));
  }
  table.merge(std::map<std::string, Fn>{
      {"exp", unary(exp)}, {"log", unary(log)}, {"sqrt", unary(sqrt)}, {"rsqrt", unary(rsqrt)},
      {"tanh", unary(tanh)}, {"sigmoid", unary(sigmoid)}, {"erf", unary(erf)},
      {"relu", unary(relu)}, {"silu", unary(silu)}, {"softplus", unary(softplus)},
      {"log_sigmoid", unary(log_sigmoid)}, {"abs", unary(abs)}, {"sign", unary(sign)},
      {"square", unary(square)}, {"reciprocal", unary(reciprocal)}, {"neg", unary(neg)},
      {"sin", unary(sin)}, {"cos", unary(cos)},
      {"gelu", call([](const Tensor& x) { return gelu(x); })},
      {"gelu_exact", call([](const Tensor& x) { return gelu(x, false); })},
      {"elu", call([](const Tensor& x) { return elu(x); })},
      {"leaky_relu", call([](const Tensor& x) { return leaky_relu(x); })},
      {"add", binary(operator+)}, {"sub", binary(operator-)}, {"mul", binary(operator*)},
      {"div", binary(operator/)}, {"maximum", binary(maximum)}, {"minimum", binary(minimum)},
      {"pow", binary(pow)},
      {"sum", call([](const Tensor& x) { return sum(x, {-1}); })},
      {"mean", call([](const Tensor& x) { return mean(x, {-1}); })},
      {"max", call([](const Tensor& x) { return max(x, {-1}); })},
      {"min", call([](const Tensor& x) { return min(x, {-1}); })},
      {"var", call([](const Tensor& x) { return var(x, {-1}); })},
      {"logsumexp", call([](const Tensor& x) { return logsumexp(x, {-1}); })},
      {"softmax", call([](const Tensor& x) { return softmax(x); })},
      {"log_softmax", call([](const Tensor& x) { return log_softmax(x); })},
      {"argmax", call([](const Tensor& x) { return argmax(x, -1); })},
      {"argmin", call([](const Tensor& x) { return argmin(x, -1); })},
      {"softmax_cross_entropy",
       call([labels](const Tensor& x) { return softmax_cross_entropy(x, labels); })},
      {"softmax_cross_entropy_with_integer_labels",
       call([labels](const Tensor& x) { return softmax_cross_entropy_with_integer_labels(x, labels); })},
      {"sigmoid_binary_cross_entropy",
       call([labels](const Tensor& x) { return sigmoid_binary_cross_entropy(x, labels); })},
      {"max_pool", call([window](const Tensor& x) { return max_pool(x, window, window); })},
      {"avg_pool", call([window](const Tensor& x) { return avg_pool(x, window, window); })},
      {"min_pool", call([window](const Tensor& x) { return min_pool(x, window, window); })},
      {"kink_relu", unary(relu)}, {"kink_relu6", unary(relu6)}, {"kink_abs", unary(abs)},
      {"kink_leaky_relu", call([](const Tensor& x) { return leaky_relu(x); })},
      {"kink_elu", call([](const Tensor& x) { return elu(x); })},
      {"kink_clip", call([](const Tensor& x) { return clip(x, -1.0, 3.0); })},
      {"kink_clip_point", call([](const Tensor& x) { return clip(x, 1.0, 1.0); })},
      {"kink_max", call([](const Tensor& x) { return max(x, {-1}); })},
      {"kink_min", call([](const Tensor& x) { return min(x, {-1}); })},
      {"kink_max_pool", call([window](const Tensor& x) { return max_pool(x, window, window); })},
      {"kink_huber_loss", call([](const Tensor& x) { return huber_loss(x); })},
      {"matmul", binary(matmul)},
      {"conv", Fn([](const auto& in) { return conv(in[0], in[1]); })},  // (input, kernel)
      {"dot_product_attention", Fn([labels](const auto& in) {  // inputs sorted: k, q, v
         AttentionOptions opt;
         opt.mask = labels;
         return dot_product_attention(in[1], in[0], in[2], opt);
       })},
  });
  return table;
}

}  // namespace

void expect_nonfinite_cases_match_jax(Device device) {
  const nlohmann::json doc = testing::load_golden("nonfinite.json");
  for (const auto& c : doc.at("cases")) {
    const std::string name = c.at("name");
    SCOPED_TRACE(name);
    // cuDNN's convolution algorithms (FFT, Winograd) may spread a NaN further than the direct
    // sum does, in JAX's GPU runs as in loom's: not a value loom chooses.
    if (device.is_cuda() && name == "conv") continue;
    const Tensor labels =
        c.contains("labels") ? golden_tensor(c.at("labels")).to(device) : Tensor();
    const Fn f = ops(labels).at(name);
    std::vector<Tensor> inputs;
    for (const auto& [key, value] : c.at("inputs").items()) inputs.push_back(golden_tensor(value).to(device));
    const Tensor y = f(inputs);
    EXPECT_ALLCLOSE(y, golden_tensor(c.at("output")), 2e-6, 1e-6) << name << " output";
    if (!c.contains("grads")) continue;
    const std::vector<Tensor> grads = vjp(f, inputs, ones_like(y));
    size_t i = 0;
    for (const auto& [key, value] : c.at("grads").items())
      EXPECT_ALLCLOSE(grads[i++], golden_tensor(value), 2e-6, 1e-6) << name << " gradient of " << key;
  }
}

}  // namespace loom::testing
