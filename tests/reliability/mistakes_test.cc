// Common user mistakes and the errors they get. Each case asserts the exact error type and that
// the message names the op or module path, the shapes/dtypes/devices involved and, where the
// library gives one, the fix. A message that regresses (loses a shape, the op name or the advice)
// fails here. Messages still lacking a fix are listed in the reliability report, not asserted.
#include <gtest/gtest.h>

#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <sstream>
#include <string>
#include <vector>

#include "core/ops/attention.h"
#include "core/ops/conv.h"
#include "core/ops/elementwise.h"
#include "core/ops/linalg.h"
#include "core/ops/loss.h"
#include "core/ops/shape.h"
#include "core/random.h"
#include "core/tensor.h"
#include "modules/layers/embedding.h"
#include "modules/layers/linear.h"
#include "modules/layers/normalization.h"
#include "modules/layers/stochastic.h"
#include "modules/module.h"
#include "tests/support/testing.h"
#include "train/checkpoint.h"
#include "train/trainer.h"

namespace loom {
namespace {

namespace fs = std::filesystem;

// --- ops: mismatched shapes ----------------------------------------------------------------------

struct BinaryCase {
  const char* op;
  std::function<Tensor(const Tensor&, const Tensor&)> f;
};

TEST(Mistakes, EveryBinaryOpNamesItselfAndBothShapes) {
  const std::vector<BinaryCase> cases = {
      {"add", [](auto& a, auto& b) { return add(a, b); }},
      {"sub", [](auto& a, auto& b) { return sub(a, b); }},
      {"mul", [](auto& a, auto& b) { return mul(a, b); }},
      {"div", [](auto& a, auto& b) { return div(a, b); }},
      {"pow", [](auto& a, auto& b) { return pow(a, b); }},
      {"maximum", [](auto& a, auto& b) { return maximum(a, b); }},
      {"minimum", [](auto& a, auto& b) { return minimum(a, b); }},
      {"equal", [](auto& a, auto& b) { return equal(a, b); }},
      {"not_equal", [](auto& a, auto& b) { return not_equal(a, b); }},
      {"less", [](auto& a, auto& b) { return less(a, b); }},
      {"less_equal", [](auto& a, auto& b) { return less_equal(a, b); }},
      {"greater", [](auto& a, auto& b) { return greater(a, b); }},
      {"greater_equal", [](auto& a, auto& b) { return greater_equal(a, b); }},
      {"logical_and", [](auto& a, auto& b) { return logical_and(a, b); }},
      {"logical_or", [](auto& a, auto& b) { return logical_or(a, b); }},
      {"where", [](auto& a, auto& b) { return where(ones({2, 3}, DType::Bool), a, b); }},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.op);
    // The operator forms go through the same op; the message names it by its function name.
    EXPECT_THROW_WITH(c.f(ones({2, 3}), ones({4, 5})), ShapeError, std::string(c.op) + ":",
                      "[2, 3]", "[4, 5]", "cannot be broadcast",
                      "dimension 0: 2 vs 4");  // the first offending axis
  }
  EXPECT_THROW_WITH(ones({2, 3}) + ones({4}), ShapeError, "add:", "[2, 3]", "[4]");
}

TEST(Mistakes, MatmulAndEinsumNameTheContractingSizes) {
  EXPECT_THROW_WITH(matmul(ones({2, 3}), ones({4, 5})), ShapeError, "matmul:", "[2, 3]", "[4, 5]",
                    "contracting sizes 3 and 4");
  EXPECT_THROW_WITH(einsum("ij,jk->ik", ones({2, 3}), ones({4, 5})), ShapeError, "einsum:",
                    "'j'", "'ij,jk->ik'", "[2, 3]", "[4, 5]");
}

TEST(Mistakes, ConvNamesInputKernelDtypesAndDevices) {
  // Channels-last input with an HWIO kernel whose C_in is wrong (the classic NCHW/OIHW mix-up).
  EXPECT_THROW_WITH(conv(ones({1, 8, 8, 3}), ones({3, 3, 4, 8})), ShapeError, "conv:",
                    "[1, 8, 8, 3] (float32, cpu)", "[3, 3, 4, 8] (float32, cpu)",
                    "[*k, 3, C_out]");  // the fix: the kernel layout expected
  // A missing batch dimension.
  EXPECT_THROW_WITH(conv(ones({8, 8, 3}), ones({3, 3, 3, 8})), ShapeError, "conv:",
                    "[N, *spatial, C]", "[8, 8, 3]", "[3, 3, 3, 8]");
}

TEST(Mistakes, AttentionNamesQueryKeyAndValue) {
  EXPECT_THROW_WITH(dot_product_attention(ones({1, 4, 2, 8}), ones({1, 4, 2, 16}), ones({1, 4, 2, 16})),
                    ShapeError, "dot_product_attention:", "query [1, 4, 2, 8] (float32)",
                    "key [1, 4, 2, 16]", "value [1, 4, 2, 16]", "depth");
  EXPECT_THROW_WITH(dot_product_attention(ones({1, 4, 2, 8}), ones({1, 4, 2, 8}), ones({1, 5, 2, 8})),
                    ShapeError, "dot_product_attention:", "value must match key", "[1, 5, 2, 8]");
}

TEST(Mistakes, EveryLossNamesPredictionsAndLabels) {
  struct LossCase {
    const char* op;
    std::function<Tensor(const Tensor&, const Tensor&)> f;
    const char* a_name;
    const char* b_name;
  };
  const std::vector<LossCase> cases = {
      {"softmax_cross_entropy", [](auto& a, auto& b) { return softmax_cross_entropy(a, b); },
       "logits", "labels"},
      {"sigmoid_binary_cross_entropy",
       [](auto& a, auto& b) { return sigmoid_binary_cross_entropy(a, b); }, "logits", "labels"},
      {"l2_loss", [](auto& a, auto& b) { return l2_loss(a, b); }, "predictions", "targets"},
      {"squared_error", [](auto& a, auto& b) { return squared_error(a, b); }, "predictions",
       "targets"},
      {"huber_loss", [](auto& a, auto& b) { return huber_loss(a, b); }, "predictions", "targets"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.op);
    EXPECT_THROW_WITH(c.f(ones({2, 3}), ones({2, 4})), ShapeError, std::string(c.op) + ":",
                      std::string(c.a_name) + " [2, 3] (float32, cpu)",
                      std::string(c.b_name) + " [2, 4] (float32, cpu)");
  }
  EXPECT_THROW_WITH(softmax_cross_entropy_with_integer_labels(ones({2, 3}), zeros({3}, DType::I32)),
                    ShapeError, "softmax_cross_entropy_with_integer_labels:", "labels [3] (int32, cpu)",
                    "leading shape [2]", "logits [2, 3] (float32, cpu)");
}

// --- wrong dtypes for labels and indices -----------------------------------------------------------

TEST(Mistakes, FloatLabelsOrIndicesAreDTypeErrorsWithAFix) {
  EXPECT_THROW_WITH(softmax_cross_entropy_with_integer_labels(ones({2, 3}), zeros({2}, DType::F32)),
                    DTypeError, "softmax_cross_entropy_with_integer_labels:",
                    "labels [2] (float32, cpu)", "logits [2, 3]",
                    "use softmax_cross_entropy for probability labels");
  EXPECT_THROW_WITH(take(ones({5, 3}), zeros({2}, DType::F32)), DTypeError, "take:",
                    "integer dtype", "float32", "[2]", "[5, 3]");
  EXPECT_THROW_WITH(one_hot(zeros({2}, DType::F32), 3), DTypeError, "one_hot:", "integer dtype",
                    "float32", "[2]");
}

// --- out-of-range embedding ids ---------------------------------------------------------------------

struct EmbedNet : nn::Module<EmbedNet> {
  Tensor call(const Tensor& ids) const {
    return nn::Embed{.num_embeddings = 4, .features = 2}(ids);
  }
};

TEST(Mistakes, OutOfRangeEmbeddingIds) {
  Tree vars = EmbedNet{}.init(random::key(0), zeros({2}, DType::I32));
  // Documented behaviour (as jnp.take's default fill mode, which flax.linen.Embed uses): an id
  // outside [-n, n) yields a NaN row rather than an error, so the NaN shows up in the loss.
  Tensor out = EmbedNet{}.apply(vars, from_vector<int32_t>({9, 1}, {2}));
  std::vector<float> v = out.to_vector<float>();
  EXPECT_TRUE(std::isnan(v[0]) && std::isnan(v[1]));
  EXPECT_FALSE(std::isnan(v[2]) || std::isnan(v[3]));
  // The checked mode (the "debug" way to find the bad id) names the id, its position and the size.
  Tensor table = vars.at("params/Embed_0/embedding").tensor();
  EXPECT_THROW_WITH(take(table, from_vector<int32_t>({1, 9}, {2}), 0, TakeMode::Checked), IndexError,
                    "take:", "index 9", "flat position 1", "axis 0 of size 4", "[4, 2]");
  // Float ids: the module path and the dtype.
  EXPECT_THROW_WITH(EmbedNet{}.apply(vars, zeros({2}, DType::F32)), DTypeError, "/Embed_0",
                    "integer", "float32", "[2]");
}

// --- devices ---------------------------------------------------------------------------------------

TEST(Mistakes, CudaTensorsInACpuOnlyBuildAreDeviceErrorsWithTheFix) {
#if LOOM_CUDA
  GTEST_SKIP() << "CUDA build: mixing devices is tested by the GPU suite";
#else
  EXPECT_THROW_WITH(ones({2}, DType::F32, Device::cuda(0)), DeviceError, "cuda:0",
                    "built without CUDA", "-DLOOM_CUDA=ON");
  EXPECT_THROW_WITH(ones({2}).to(Device::cuda(0)), DeviceError, "Tensor::to:", "cuda:0",
                    "-DLOOM_CUDA=ON");
#endif
}

// --- flax.errors-style module mistakes ---------------------------------------------------------------

struct Net : nn::Module<Net> {
  Tensor call(const Tensor& x) const { return nn::Dense{.features = 3}(x); }
};
struct DropNet : nn::Module<DropNet> {
  Tensor call(const Tensor& x) const { return nn::Dropout{.rate = 0.5}(x); }
};
struct BNNet : nn::Module<BNNet> {
  Tensor call(const Tensor& x) const { return nn::BatchNorm{}(x); }
};
// One name for two different submodules. (The same name with the same type is, by design in
// loom, the same shared child: modules/scope.h; Flax raises NameInUseError there too.)
struct TwoNamed : nn::Module<TwoNamed> {
  Tensor call(const Tensor& x) const {
    Tensor y = nn::Dense{.features = 2}.named("proj")(x);
    return nn::LayerNorm{}.named("proj")(y);
  }
};

TEST(Mistakes, ModuleErrorsNameThePathAndTheFix) {
  Tree vars = Net{}.init(random::key(0), ones({2, 4}));
  // Dropout without a "dropout" rng.
  EXPECT_THROW_WITH(DropNet{}.apply(Tree(), ones({2, 4})), nn::InvalidRngError, "/Dropout_0",
                    "\"dropout\"", "{.rngs = {{\"dropout\", key}}}", "deterministic");
  // apply(params) instead of apply({"params": params}).
  EXPECT_THROW_WITH(Net{}.apply(vars["params"], ones({2, 4})), nn::ScopeCollectionNotFound,
                    "\"kernel\"", "\"params\"", "/Dense_0", "{\"params\": ...}");
  // Params of another model (the parameter cannot be found).
  Tree other;
  other.set("params/Dense_1/kernel", zeros({4, 3}));
  EXPECT_THROW_WITH(Net{}.apply(other, ones({2, 4})), nn::ScopeParamNotFoundError, "\"kernel\"",
                    "/Dense_0");
  // BatchNorm in training mode without mutable batch_stats.
  Tree bn = BNNet{}.init(random::key(0), ones({2, 4}));
  EXPECT_THROW_WITH(BNNet{}.apply(bn, ones({2, 4})), nn::ModifyScopeVariableError, "/BatchNorm_0",
                    "\"batch_stats\"", "immutable", "apply_mutable(variables, {\"batch_stats\"}",
                    "use_running_average = true");
  // The input shape changed between init and apply.
  EXPECT_THROW_WITH(Net{}.apply(vars, ones({2, 5})), nn::ScopeParamShapeError, "\"kernel\"",
                    "/Dense_0", "[5, 3]", "[4, 3]", "re-run init");
  // Two submodules with one name.
  EXPECT_THROW_WITH(TwoNamed{}.init(random::key(0), ones({1, 2})), nn::NameInUseError, "\"proj\"",
                    "Dense");
  // A module called outside init/apply.
  EXPECT_THROW_WITH(nn::Dense{.features = 3}(ones({2, 4})), nn::CallCompactUnboundModuleError,
                    "unbound", "Dense", "init");
  // {"params": {"params": ...}}.
  Tree nested;
  nested.insert("params", vars);
  EXPECT_THROW_WITH(Net{}.apply(nested, ones({2, 4})), nn::ApplyScopeInvalidVariablesStructureError,
                    "{\"params\": {\"params\": ...}}");
}

// --- checkpoint into a different model ----------------------------------------------------------------

TEST(Mistakes, CheckpointIntoADifferentModelListsEveryKey) {
  fs::path dir = fs::temp_directory_path() / ("loom_mistakes_ckpt_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  train::CheckpointManager mgr(dir.string(), 0);
  Tree saved;
  saved.set("params/Dense_0/kernel", zeros({4, 3}));
  saved.set("params/Dense_0/bias", zeros({3}));
  saved.set("params/old_head/kernel", zeros({3, 2}));
  mgr.save(1, saved);

  Tree target;
  target.set("params/Dense_0/kernel", zeros({5, 3}));                 // mismatched shape
  target.set("params/Dense_0/bias", zeros({3}, DType::F64));          // mismatched dtype
  target.set("params/new_head/kernel", zeros({3, 2}));                // missing
  try {
    mgr.restore_into(target);
    ADD_FAILURE() << "restore_into accepted a different model";
  } catch (const train::CheckpointMismatchError& e) {
    EXPECT_EQ(e.missing(), std::vector<std::string>{"params/new_head/kernel"});
    EXPECT_EQ(e.unexpected(), std::vector<std::string>{"params/old_head/kernel"});
    EXPECT_EQ(e.mismatched(),
              (std::vector<std::string>{"params/Dense_0/kernel", "params/Dense_0/bias"}));
    std::string msg = e.what();
    for (const char* part : {"restore_into:", "1 missing, 1 unexpected, 2 mismatched",
                             "params/Dense_0/kernel", "[4, 3]", "[5, 3]", "float64",
                             "params/new_head/kernel", "params/old_head/kernel"})
      EXPECT_NE(msg.find(part), std::string::npos) << msg << "\nlacks: " << part;
  }
  // It is a ShapeError, so generic handlers catch it.
  EXPECT_THROW(mgr.restore_into(target), ShapeError);
  fs::remove_all(dir);
}

// --- bad CLI flags ----------------------------------------------------------------------------------

// The `loom` command sits at <build>/apps/loom next to <build>/tests/loom_tests.
std::string loom_binary() {
  std::error_code ec;
  fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (ec) return "";
  fs::path bin = exe.parent_path().parent_path() / "apps" / "loom";
  return fs::exists(bin) ? bin.string() : "";
}

struct CliResult {
  int status;
  std::string output;
};
CliResult run_cli(const std::string& args) {
  std::string cmd = loom_binary() + " " + args + " 2>&1";
  FILE* p = ::popen(cmd.c_str(), "r");
  CliResult r{-1, ""};
  if (!p) return r;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) r.output.append(buf, n);
  r.status = ::pclose(p);
  return r;
}

TEST(Mistakes, BadCliFlagsFailWithAMessageNamingTheFlag) {
  if (loom_binary().empty()) GTEST_SKIP() << "apps/loom not built next to the tests";
  struct CliCase {
    std::string args;
    std::vector<std::string> parts;
  };
  // A regular file where the run directory should be.
  fs::path file = fs::temp_directory_path() / ("loom_mistakes_file_" + std::to_string(::getpid()));
  std::FILE* f = std::fopen(file.c_str(), "w");
  ASSERT_NE(f, nullptr);
  std::fclose(f);
  // Cases that pass the parser stop in TrainConfig::validate (or at the dataset name), before
  // any data is read.
  const std::vector<CliCase> cases = {
      {"train --no-such-flag", {"--no-such-flag", "--help"}},
      {"no-such-command", {"no-such-command", "--help"}},
      {"train --lr abc", {"--lr", "abc"}},
      {"train --lr -1", {"--lr", "-1", "greater than 0"}},
      {"train --lr", {"--lr", "missing"}},
      {"train --batch-size 0", {"--batch-size", "0"}},
      {"train --batch-size -5", {"--batch-size", "whole number > 0", "'-5'"}},
      {"train --batch-size abc", {"--batch-size", "whole number > 0", "'abc'"}},
      {"train --batch-size 1.5", {"--batch-size", "whole number > 0", "'1.5'"}},
      {"train --epochs 0", {"--epochs", "whole number > 0", "'0'"}},
      {"train --steps -1", {"--steps", "whole number >= 0", "'-1'"}},
      {"train --seed -1", {"--seed", "whole number >= 0", "'-1'"}},
      {"train --keep 0", {"--keep", "'0'"}},
      {"train --log-every 0", {"--log-every", "'0'"}},
      {"train --max-consecutive-nonfinite -2", {"--max-consecutive-nonfinite", "'-2'"}},
      {"train --loss-scale-period 0", {"--loss-scale-period", "'0'"}},
      {"train --optimizer adagrad", {"--optimizer", "adagrad", "sgd,momentum,adam,adamw"}},
      {"train --schedule linear", {"--schedule", "linear", "constant,cosine"}},
      {"train --precision fp8", {"--precision", "fp8", "f32,bf16,f16"}},
      {"train --model nope", {"--model 'nope'", "cnn, resnet18", "transformer-lm"}},
      {"train --device tpu", {"--device 'tpu'", "auto, cpu, cuda, cuda:N"}},
      {"train --momentum 1.5", {"--momentum", "[0, 1)", "1.5"}},
      {"train --weight-decay -0.1", {"--weight-decay", ">= 0", "-0.1"}},
      {"train --run-dir " + file.string(), {"--run-dir", file.string(), "not a directory"}},
      {"train --dataset nothing", {"--dataset", "'nothing'", "fashion_mnist", "synthetic:HxWxC:CLASSES:N"}},
      {"train --dataset synthetic:8x8:4:64", {"--dataset", "synthetic:8x8:4:64", "e.g. synthetic:32x32x3:10:1024"}},
      {"eval --run-dir /nonexistent/loom_run", {"no checkpoint in /nonexistent/loom_run", "loom train --run-dir"}},
      {"eval --batch-size 0", {"--batch-size", "'0'"}},
      {"sample --temperature -1", {"--temperature", "number >= 0", "'-1'"}},
      {"sample --tokens 0", {"--tokens", "'0'"}},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.args);
    CliResult r = run_cli(c.args);
    EXPECT_NE(r.status, 0) << r.output;
    for (const auto& part : c.parts)
      EXPECT_NE(r.output.find(part), std::string::npos) << r.output << "\nlacks: " << part;
  }
  fs::remove(file);
}

// The same checks for programs that fill a TrainConfig themselves: validate() (called first by
// run_training) names the setting as its flag, the bad value and what is allowed.
TEST(Mistakes, BadTrainConfigValuesNameTheSettingAndTheAllowedValues) {
  struct ConfigCase {
    std::function<void(train::TrainConfig&)> set;
    std::vector<std::string> parts;
  };
  using C = train::TrainConfig;
  const std::vector<ConfigCase> cases = {
      {[](C& c) { c.batch_size = 0; }, {"--batch-size must be positive, got 0"}},
      {[](C& c) { c.batch_size = -32; }, {"--batch-size must be positive, got -32"}},
      {[](C& c) { c.epochs = 0; c.steps = 0; }, {"--epochs or --steps must be positive"}},
      {[](C& c) { c.steps = -5; }, {"--steps must be >= 0", "-5"}},
      {[](C& c) { c.learning_rate = 0; }, {"--lr must be positive, got 0"}},
      {[](C& c) { c.learning_rate = std::nan(""); }, {"--lr must be positive", "nan"}},
      {[](C& c) { c.warmup_steps = -1; }, {"--warmup-steps must be >= 0, got -1"}},
      {[](C& c) { c.momentum = 1; }, {"--momentum must be in [0, 1), got 1"}},
      {[](C& c) { c.weight_decay = -1e-4; }, {"--weight-decay must be >= 0"}},
      {[](C& c) { c.keep_checkpoints = 0; }, {"--keep must be positive, got 0"}},
      {[](C& c) { c.checkpoint_every = -1; }, {"--checkpoint-every must be >= 0", "-1"}},
      {[](C& c) { c.eval_every = -1; }, {"--eval-every must be >= 0", "-1"}},
      {[](C& c) { c.log_every = 0; }, {"--log-every must be positive, got 0"}},
      {[](C& c) { c.max_eval_examples = -1; }, {"--max-eval-examples must be >= 0", "-1"}},
      {[](C& c) { c.sequence_length = 0; }, {"--seq-len must be positive, got 0"}},
      {[](C& c) { c.loss_scale_period = 0; }, {"--loss-scale-period must be positive, got 0"}},
      {[](C& c) { c.max_consecutive_nonfinite = -1; }, {"--max-consecutive-nonfinite must be >= 0"}},
      {[](C& c) { c.model = "resnet"; },
       {"--model 'resnet' is not one of:", "cnn, resnet18, resnet34", "gpt2"}},
      {[](C& c) { c.optimizer = "Adam"; }, {"--optimizer 'Adam' is not one of: sgd, momentum, adam, adamw"}},
      {[](C& c) { c.schedule = "linear"; }, {"--schedule 'linear' is not one of: constant, cosine"}},
      {[](C& c) { c.precision = "fp16"; }, {"--precision 'fp16' is not one of: f32, bf16, f16"}},
      {[](C& c) { c.device = "cuda:x"; }, {"--device 'cuda:x' is not one of: auto, cpu, cuda, cuda:N"}},
      {[](C& c) { c.run_dir = ""; }, {"--run-dir must not be empty"}},
  };
  for (size_t i = 0; i < cases.size(); ++i) {
    SCOPED_TRACE("case " + std::to_string(i));
    train::TrainConfig c;
    c.dataset = "synthetic:8x8x1:4:16";
    c.device = "cpu";
    cases[i].set(c);
    try {
      c.validate();
      ADD_FAILURE() << "validate accepted it";
    } catch (const ValueError& e) {
      for (const auto& part : cases[i].parts)
        EXPECT_NE(std::string(e.what()).find(part), std::string::npos) << e.what() << "\nlacks: " << part;
    }
  }
  train::TrainConfig ok;
  ok.validate();  // the defaults are valid
  // A dataset name is checked when it is loaded, still before anything trains.
  train::TrainConfig bad_data;
  bad_data.dataset = "synthetic:8x8x1:four:16";
  bad_data.device = "cpu";
  bad_data.run_dir = (fs::temp_directory_path() / "loom_mistakes_bad_data").string();
  std::ostringstream log;
  EXPECT_THROW_WITH(train::run_training(bad_data, log), ValueError, "--dataset:",
                    "synthetic:8x8x1:four:16", "expected synthetic:HxWxC:CLASSES:N");
  fs::remove_all(bad_data.run_dir);
#if !LOOM_CUDA
  // A GPU asked of a build without CUDA: the flag and the fix.
  train::TrainConfig gpu = bad_data;
  gpu.dataset = "synthetic:8x8x1:4:16";
  gpu.device = "cuda";
  EXPECT_THROW_WITH(train::run_training(gpu, log), DeviceError, "--device", "-DLOOM_CUDA=ON");
  fs::remove_all(gpu.run_dir);
#endif
}

}  // namespace
}  // namespace loom
