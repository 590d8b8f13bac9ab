// Parity of the zoo's models with real Flax (scripts/golden/gen_flax_models.py): for the same
// seed loom's init equals Flax's (paths, order, shapes, values); with Flax's variables the
// logits, loss, updated batch statistics and gradients agree (logits rtol 1e-4, grads 1e-3),
// for the ResNet block kinds and the TransformerLM plain, remat, scan and scan + remat.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "core/grad.h"
#include "core/ops/elementwise.h"
#include "core/ops/loss.h"
#include "core/ops/reduce.h"
#include "core/ops/shape.h"
#include "modules/models/resnet.h"
#include "modules/models/transformer.h"
#include "tests/modules/flax_golden.h"
#include "train/io/flax_msgpack.h"

namespace loom {
namespace {

using nn::models::ResNet;
using nn::models::TransformerLM;

constexpr double kInitRtol = 1e-6, kInitAtol = 1e-7;
constexpr double kLogitRtol = 1e-4, kLogitAtol = 1e-5;
constexpr double kGradRtol = 1e-3, kGradAtol = 1e-6;

const nlohmann::json& models_json() {
  static const nlohmann::json j = testing::load_golden("flax_models.json");
  return j;
}

Tree golden_msgpack(const std::string& name) {
  return train::load_flax_msgpack(std::string(LOOM_GOLDEN_DIR) + "/" + name);
}

/// The same set of leaf paths (the msgpack goldens went through jax pytrees, so their dicts are
/// sorted; the order of creation is checked against the JSON's init_paths), each leaf allclose.
::testing::AssertionResult trees_close(const Tree& actual, const Tree& expected, double rtol,
                                       double atol) {
  auto a = actual.flatten();
  if (a.size() != expected.leaf_count())
    return ::testing::AssertionFailure() << a.size() << " leaves vs " << expected.leaf_count();
  for (const auto& [path, leaf] : a) {
    if (!expected.has_path(path)) return ::testing::AssertionFailure() << "no golden " << path;
    auto r = testing::allclose(leaf.to(DType::F32), expected.at(path).tensor().to(DType::F32),
                               rtol, atol);
    if (!r) return ::testing::AssertionFailure() << path << ": " << r.message();
  }
  return ::testing::AssertionSuccess();
}

std::vector<std::string> paths_of(const Tree& t) {
  std::vector<std::string> out;
  for (const auto& [p, v] : t.flatten()) out.push_back(p);
  return out;
}

/// The script's perturbation: float32(v + 0.1 sin(i + 1)); running variances 1 + 0.5 |sin|.
Tree perturbed(const Tree& collection, bool batch_stats) {
  Tree out;
  for (const auto& [path, leaf] : collection.flatten()) {
    std::vector<double> v = leaf.to_vector<double>();
    bool is_var = batch_stats && path.size() >= 3 && path.substr(path.size() - 3) == "var";
    std::vector<float> r(v.size());
    for (size_t i = 0; i < v.size(); ++i) {
      double s = std::sin(double(i) + 1.0);
      r[i] = is_var ? float(1.0 + 0.5 * std::abs(s)) : float(v[i] + 0.1 * s);
    }
    out.set(path, from_vector(r, leaf.shape()));
  }
  return out;
}

ResNet tiny_resnet(const std::string& name) {
  if (name == "resnet_basic")
    return ResNet{.stage_sizes = {1, 1}, .num_classes = 10, .num_filters = 8};
  return ResNet{.stage_sizes = {1, 1},
                .block_cls = nn::models::ResNetBlockKind::Bottleneck,
                .num_classes = 10,
                .num_filters = 8,
                .small_input_stem = true};
}

void check_resnet(const std::string& name) {
  SCOPED_TRACE(name);
  Tree g = golden_msgpack("flax_models_" + name + ".msgpack");
  const auto& meta = models_json().at(name);
  Tensor x = g["input"].tensor(), labels = g["labels"].tensor();
  ResNet model = tiny_resnet(name);

  Tree init = model.init(random::key(0), x);
  EXPECT_EQ(paths_of(init), meta.at("init_paths").get<std::vector<std::string>>());
  EXPECT_TRUE(trees_close(init, g["init"], kInitRtol, kInitAtol));
  EXPECT_EQ(init["params"].total_size(), meta.at("param_count").get<int64_t>());

  Tree stats = perturbed(g["init"]["batch_stats"], true);
  Tree params = perturbed(g["init"]["params"], false);
  Tree vars = nn::variables({{"params", params}, {"batch_stats", stats}});

  auto [logits, updates] = model.apply_mutable(vars, {"batch_stats"}, x);
  EXPECT_TRUE(testing::allclose(logits, g["logits_train"].tensor(), kLogitRtol, kLogitAtol));
  EXPECT_TRUE(trees_close(updates["batch_stats"], g["batch_stats_after"], 1e-4, 1e-6));

  ResNet eval = model;
  eval.train = false;
  EXPECT_TRUE(testing::allclose(eval.apply(vars, x), g["logits_eval"].tensor(), kLogitRtol,
                                kLogitAtol));

  auto [loss, grads] = value_and_grad([&](const Tree& p) {
    auto out = model.apply_mutable(nn::variables({{"params", p}, {"batch_stats", stats}}),
                                   {"batch_stats"}, x);
    return mean(softmax_cross_entropy_with_integer_labels(out.first, labels));
  })(params);
  EXPECT_NEAR(loss.item<double>(), meta.at("loss").get<double>(),
              1e-5 * std::abs(meta.at("loss").get<double>()));
  EXPECT_TRUE(trees_close(grads, g["grads"], kGradRtol, kGradAtol));
}

TEST(FlaxModels, ResNetBasicBlock) { check_resnet("resnet_basic"); }
TEST(FlaxModels, ResNetBottleneckSmallStem) { check_resnet("resnet_bottleneck"); }

TransformerLM tiny_lm() {
  return TransformerLM{.vocab_size = 64, .max_len = 16, .num_layers = 2, .num_heads = 4,
                       .d_model = 24};
}

/// h_0, h_1 stacked into "h" (the layout of scan_layers).
Tree stacked(const Tree& params, int64_t layers) {
  Tree out;
  for (const auto& key : params.keys())
    if (key.rfind("h_", 0) != 0) out.insert(key, params[key]);
  Tree h;
  for (const auto& [path, leaf] : params["h_0"].flatten()) {
    std::vector<Tensor> parts;
    for (int64_t i = 0; i < layers; ++i)
      parts.push_back(params["h_" + std::to_string(i)].at(path).tensor());
    h.set(path, stack(parts, 0));
  }
  out.insert("h", h);
  return out;
}

const Tree& lm_golden() {
  static const Tree g = golden_msgpack("flax_models_lm.msgpack");
  return g;
}

TEST(FlaxModels, TransformerLMInitEqualsFlax) {
  const Tree& g = lm_golden();
  const auto& meta = models_json().at("lm");
  Tensor tokens = g["input"].tensor();
  for (bool remat : {false, true}) {
    TransformerLM lm = tiny_lm();
    lm.remat = remat;
    Tree init = lm.init(random::key(0), tokens);
    // Flax's creation order; a lifted remat's variables come back sorted (pytree dicts), as
    // loom's do.
    std::vector<std::string> expected = meta.at("init_paths").get<std::vector<std::string>>();
    std::vector<std::string> actual = paths_of(init);
    if (remat) {
      std::sort(expected.begin(), expected.end());
      std::sort(actual.begin(), actual.end());
    }
    EXPECT_EQ(actual, expected);
    EXPECT_TRUE(trees_close(init, g["init"], kInitRtol, kInitAtol)) << "remat " << remat;
    EXPECT_EQ(init["params"].total_size(), meta.at("param_count").get<int64_t>());
  }
  // Scanned: params stacked and drawn with split rngs, as nn.scan.
  TransformerLM lm = tiny_lm();
  lm.scan_layers = true;
  Tree init = lm.init(random::key(0), tokens);
  std::vector<std::string> expected = meta.at("scan_init_paths").get<std::vector<std::string>>();
  std::vector<std::string> actual = paths_of(init);
  std::sort(expected.begin(), expected.end());  // lifted: pytree (sorted) order inside "h"
  std::sort(actual.begin(), actual.end());
  EXPECT_EQ(actual, expected);
  for (const auto& [path, leaf] : init.flatten())
    EXPECT_TRUE(testing::matches_golden(leaf, meta.at("scan_init").at(path), kInitRtol, kInitAtol))
        << path;
}

TEST(FlaxModels, TransformerLMLogitsLossGrads) {
  const Tree& g = lm_golden();
  const auto& meta = models_json().at("lm");
  Tensor tokens = g["input"].tensor(), labels = g["labels"].tensor();
  Tree params = g["init"]["params"];
  struct Variant {
    std::string name;
    bool scan, remat;
  };
  for (const Variant& v : {Variant{"plain", false, false}, Variant{"remat", false, true},
                           Variant{"scan", true, false}, Variant{"scan_remat", true, true}}) {
    SCOPED_TRACE(v.name);
    TransformerLM lm = tiny_lm();
    lm.scan_layers = v.scan;
    lm.remat = v.remat;
    Tree p = v.scan ? stacked(params, 2) : params;
    Tree expected_grads = v.scan ? stacked(g["grads"], 2) : g["grads"];
    auto [loss, logits, grads] = value_and_grad_aux([&](const Tree& q) {
      Tensor out = lm.apply(nn::variables({{"params", q}}), tokens);
      return std::pair{mean(softmax_cross_entropy_with_integer_labels(out, labels)),
                       out.detach()};
    })(p);
    EXPECT_TRUE(testing::allclose(logits, g["logits"].tensor(), kLogitRtol, kLogitAtol));
    EXPECT_NEAR(loss.item<double>(), meta.at("loss").get<double>(), 1e-5);
    EXPECT_TRUE(trees_close(grads, expected_grads, kGradRtol, kGradAtol));
  }
}

TEST(FlaxModels, TransformerLMDropoutMasksEqualFlax) {
  const Tree& g = lm_golden();
  Tensor tokens = g["input"].tensor();
  for (bool scan : {false, true}) {
    SCOPED_TRACE(scan ? "scan" : "plain");
    TransformerLM lm = tiny_lm();
    lm.dropout_rate = 0.1;
    lm.deterministic = false;
    lm.scan_layers = scan;
    Tree p = scan ? stacked(g["init"]["params"], 2) : g["init"]["params"];
    Tensor out = lm.apply(nn::variables({{"params", p}}), {.rngs = {{"dropout", random::key(1)}}},
                          tokens);
    EXPECT_TRUE(testing::allclose(out, g[scan ? "logits_dropout_scan" : "logits_dropout"].tensor(),
                                  kLogitRtol, kLogitAtol));
  }
}

TEST(FlaxModels, FullSizeCountsRecordedFromFlax) {
  EXPECT_EQ(models_json().at("gpt2_param_count").get<int64_t>(), 124439808);
  EXPECT_EQ(models_json().at("resnet50_param_count").get<int64_t>(), 25557032);
}

}  // namespace
}  // namespace loom
