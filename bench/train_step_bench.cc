// loom_bench: times loom's real training step (value_and_grad of the loss through the model's
// apply, then TrainState::apply_gradients) for one model and prints one JSON line, the same line
// bench/jax/train_step_bench.py prints for the Flax/Optax version, so scripts/bench.sh can put
// the two side by side.
//
//   loom_bench --model cnn|resnet50|gpt2|gpt2-medium|transformer-lm [--batch N] [--steps N] [--warmup N]
//              [--device cpu|cuda] [--precision f32|bf16] [--seq N] [--image N] [--graph on]
//              [--kernel-trace on] [--attention composed|fused|cudnn] [--allocation-trace FILE]
//              [--sync-batch-norm on] [--dropout RATE] [--conv-autotune on] [--gemm-autotune on]
//              [--fusions-off NAME,...|all] [--graph-launch host|device]
//
// transformer-lm (the zoo's 4-layer, d_model 128 language model, vocabulary 256, batch 4 x 32
// tokens by default) is small enough that on a GPU its step measures the framework's cost per op
// (dispatch, autodiff records, allocation, kernel launches) more than its kernels; on a CPU,
// --batch 1 --seq 8 comes close.
// --kernel-trace (CUDA builds, needs libcupti at run time): adds "kernels", the device time per
// kernel name over the timed steps (per step, largest first), and "kernel_ms_per_step".
// The batch is synthetic and made once on the device before timing, so the number is the step
// alone (no data loading), as in the JAX script. Each timed step ends with a host read of the loss
// (and a device synchronize on CUDA) so a step's time includes all of its kernels.
// --allocation-trace FILE: every tensor allocation and release on the device, from the batch's
// creation through the last timed step, one per line ("+ id bytes op scope", "- id": the op that
// returned the storage, "-" if none, and the module path or "backward of <op>" it was made in), for
// bench/allocator_replay.cc to replay through the CUDA allocator's policies and to split the
// peak's live bytes by op and by scope.
// --sync-batch-norm on (resnet50): the step as a data-parallel replica runs it, BatchNorm's
// statistics through the "batch" axis (dist::register_axis), here in a world of one.
// --dropout RATE (language models): dropout while training, as `loom train` runs them (its
// default 0.1); 0 by default, as the JAX script and llm.c's benchmark runs.
// --conv-autotune on: cuDNN's convolution algorithms timed per shape in the first step
// (core/autotune.h) instead of taken from its heuristics; the timing's workspaces count in
// peak_mem_mb. --gemm-autotune on: the same for cuBLASLt's products.
// --fusions-off NAME,...|all: those fused routes off (core/fusions.h), the ops they replace run
// instead (as LOOM_FUSIONS_OFF does); the line's "fusions_off" lists every one that is off.
// --graph-launch device (with --graph on; without it there is nothing to launch and the flag is
// ignored): replays launched from the device (JitOptions::device_launch); "graph_device_launch"
// says whether the driver took it, "graph_device_launch_refused" why not.
// A model the zoo does not know yet is reported as {"error": "model not available: ..."} with
// exit code 0: scripts/bench.sh shows the error in its table and goes on.
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <memory>
#include <unordered_map>
#include <map>
#include <nlohmann/json.hpp>
#include <numeric>
#include <optional>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "bench/bench_util.h"
#if LOOM_CUDA
#include "bench/kernel_trace.h"
#include "kernels/cuda/runtime.h"
#endif
#include "core/autotune.h"
#include "core/fusions.h"
#include "core/grad.h"
#include "core/jit.h"
#include "core/memory.h"
#include "core/ops/attention.h"
#include "core/ops/cast.h"
#include "core/ops/elementwise.h"
#include "core/ops/loss.h"
#include "core/ops/reduce.h"
#include "core/precision.h"
#include "core/random.h"
#include "optim/optimizers.h"
#include "train/dist/dist.h"
#include "train/model_zoo.h"
#include "train/train_state.h"

namespace {

using namespace loom;
using bench::median;
using bench::synchronize;
using Clock = std::chrono::steady_clock;

struct Options {
  std::string model = "cnn";
  int64_t batch = 0;  // 0: the model's default
  int64_t steps = 20;
  int64_t warmup = 5;
  std::string device = "cpu";
  std::string precision = "f32";
  int64_t seq = 0;        // language models (0: gpt2 1024, transformer-lm 32)
  int64_t image = 224;    // resnet50
  double dropout = 0.0;   // language models
  double peak_tflops = 989.0;  // H100/H200 SXM dense bf16, llm.c's MFU denominator
  bool graph = false;          // replay the step as a CUDA graph (core/jit.h)
  bool kernel_trace = false;   // device time per kernel through CUPTI (bench/kernel_trace.h)
  std::string attention = "composed";  // dot_product_attention's implementation (gpt2)
  std::string allocation_trace;        // file for the device's allocation events ("": none)
  bool sync_batch_norm = false;        // resnet50's BatchNorm over the "batch" axis
  bool conv_autotune = false;          // time cuDNN's convolution algorithms (core/autotune.h)
  bool gemm_autotune = false;          // time cuBLASLt's product algorithms (core/autotune.h)
  std::string fusions_off;             // fused routes to switch off (core/fusions.h)
  std::string graph_launch = "host";   // --graph on: replays launched from the host or device
};

[[noreturn]] void usage(const std::string& why) {
  std::cerr << "loom_bench: " << why << "\n"
            << "usage: loom_bench --model cnn|resnet50|gpt2|gpt2-medium|transformer-lm [--batch N] [--steps N]\n"
            << "       [--warmup N]\n"
            << "       [--device cpu|cuda] [--precision f32|bf16] [--seq N] [--image N]\n"
            << "       [--peak-tflops X] [--graph on|off] [--kernel-trace on|off]\n"
            << "       [--attention composed|fused|cudnn] [--allocation-trace FILE]\n"
            << "       [--sync-batch-norm on|off] [--dropout RATE] [--conv-autotune on|off]\n"
            << "       [--gemm-autotune on|off]\n"
            << "       [--fusions-off NAME,...|all] [--graph-launch host|device]\n";
  std::exit(2);
}

Options parse(int argc, char** argv) {
  Options o;
  std::map<std::string, std::string> kv;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "-h" || a == "--help") usage("help");
    if (a.rfind("--", 0) != 0 || i + 1 >= argc) usage("bad argument '" + a + "'");
    kv[a.substr(2)] = argv[++i];
  }
  auto num = [&](const char* k, int64_t& dst) {
    if (!kv.count(k)) return;
    try {
      dst = std::stoll(kv[k]);
    } catch (...) {
      usage(std::string("--") + k + " needs an integer, got '" + kv[k] + "'");
    }
    kv.erase(k);
  };
  auto str = [&](const char* k, std::string& dst) {
    if (kv.count(k)) dst = kv[k], kv.erase(k);
  };
  str("model", o.model);
  str("device", o.device);
  str("precision", o.precision);
  str("attention", o.attention);
  str("allocation-trace", o.allocation_trace);
  str("fusions-off", o.fusions_off);
  str("graph-launch", o.graph_launch);
  num("batch", o.batch);
  num("steps", o.steps);
  num("warmup", o.warmup);
  num("seq", o.seq);
  num("image", o.image);
  if (kv.count("peak-tflops")) o.peak_tflops = std::stod(kv["peak-tflops"]), kv.erase("peak-tflops");
  if (kv.count("dropout")) o.dropout = std::stod(kv["dropout"]), kv.erase("dropout");
  auto flag = [&](const char* k, bool& dst) {
    if (kv.count(k)) dst = kv[k] == "1" || kv[k] == "on", kv.erase(k);
  };
  flag("graph", o.graph);
  flag("kernel-trace", o.kernel_trace);
  flag("sync-batch-norm", o.sync_batch_norm);
  flag("conv-autotune", o.conv_autotune);
  flag("gemm-autotune", o.gemm_autotune);
  if (!kv.empty()) usage("unknown option --" + kv.begin()->first);
  const bool gpt2 = o.model == "gpt2" || o.model == "gpt2-medium";
  if (o.model != "cnn" && o.model != "resnet50" && !gpt2 && o.model != "transformer-lm")
    usage("unknown model '" + o.model + "'");
  if (o.precision != "f32" && o.precision != "bf16") usage("precision is f32 or bf16");
  if (o.attention != "composed" && o.attention != "fused" && o.attention != "cudnn")
    usage("attention is composed, fused or cudnn");
  if (o.steps < 1 || o.warmup < 0) usage("--steps must be >= 1 and --warmup >= 0");
  if (o.graph_launch != "host" && o.graph_launch != "device") usage("--graph-launch is host or device");
  if (o.sync_batch_norm && o.model != "resnet50") usage("--sync-batch-norm is for resnet50");
  if (o.dropout != 0.0 && (o.model == "cnn" || o.model == "resnet50"))
    usage("--dropout is for the language models");
  if (o.dropout < 0.0 || o.dropout >= 1.0) usage("--dropout must be in [0, 1)");
  if (o.batch == 0)
    o.batch = o.model == "cnn" ? 128 : o.model == "resnet50" ? 256 : gpt2 ? 16 : 4;
  if (o.seq == 0) o.seq = gpt2 ? 1024 : 32;
  return o;
}

// Integer labels/tokens in [0, n) made on the host (the benchmark needs values, not JAX's
// exact random stream; the JAX script does the same).
Tensor random_ints(uint32_t seed, Shape shape, int64_t n) {
  std::mt19937 gen(seed);
  std::uniform_int_distribution<int32_t> dist(0, int32_t(n - 1));
  std::vector<int32_t> v(size_t(shape_numel(shape)));
  for (auto& x : v) x = dist(gen);
  return from_vector(v, std::move(shape));
}

// One benchmark configuration: the zoo model, its synthetic batch and its optimizer, matching
// bench/jax/train_step_bench.py.
struct Workload {
  train::ZooModel model;
  Tensor inputs, labels;
  optim::GradientTransformation tx;
  std::string unit;     // throughput unit
  double items = 0;     // images or tokens per step
  int64_t layers = 0, channels = 0, seq = 0;  // a language model's shape, for llm.c's MFU formula
};

Workload make_workload(const Options& o, Device device) {
  Workload w;
  random::Key key = random::key(0);
  if (o.model == "cnn") {
    w.model = train::make_model("cnn", {.num_classes = 10});
    w.inputs = random::normal(random::fold_in(key, 1), {o.batch, 28, 28, 1});
    w.labels = random_ints(2, {o.batch}, 10);
    w.tx = optim::sgd(0.1, 0.9);  // Flax's MNIST example
    w.unit = "img/s";
    w.items = double(o.batch);
  } else if (o.model == "resnet50") {
    train::ModelSpec spec{.num_classes = 1000};
    if (o.sync_batch_norm) {
      dist::init();  // registers the "batch" axis; a world of one unless launched
      spec.batch_axis = "batch";
    }
    w.model = train::make_model("resnet50", spec);
    w.inputs = random::normal(random::fold_in(key, 1), {o.batch, o.image, o.image, 3});
    w.labels = random_ints(2, {o.batch}, 1000);
    w.tx = optim::sgd(0.1, 0.9);  // Flax's ImageNet example (nesterov off)
    w.unit = "img/s";
    w.items = double(o.batch);
  } else {
    const bool gpt2 = o.model != "transformer-lm", medium = o.model == "gpt2-medium";
    const int64_t vocab = gpt2 ? 50257 : 256;
    // No dropout by default, as the Flax GPT-2 in bench/jax/models.py (and llm.c's benchmark runs).
    w.model = train::make_model(o.model, {.num_classes = vocab, .sequence_length = o.seq,
                                          .dropout_rate = o.dropout});
    w.inputs = random_ints(1, {o.batch, o.seq}, vocab);
    w.labels = random_ints(2, {o.batch, o.seq}, vocab);
    w.tx = optim::adamw(3e-4, {.b1 = 0.9, .b2 = 0.95, .eps = 1e-8, .weight_decay = 0.1});
    w.unit = "tok/s";
    w.items = double(o.batch * o.seq);
    w.layers = medium ? 24 : gpt2 ? 12 : 4, w.channels = medium ? 1024 : gpt2 ? 768 : 128;
    w.seq = o.seq;
  }
  w.inputs = w.inputs.to(device);
  w.labels = w.labels.to(device);
  return w;
}

// Writes the events on `device` with storages numbered in allocation order (an address is
// reused once released). Returns how many were written.
int64_t write_allocation_trace(const std::vector<AllocationEvent>& events, Device device,
                               const Options& o) {
  std::ofstream out(o.allocation_trace);
  if (!out) throw IOError("loom_bench --allocation-trace: cannot write '" + o.allocation_trace + "'");
  out << "# loom allocation trace: model " << o.model << ", batch " << o.batch << ", precision "
      << o.precision << ", device " << device.str() << ", " << o.warmup << " warm-up + "
      << o.steps << " timed steps\n";
  std::unordered_map<const void*, int64_t> live;
  int64_t next_id = 0, written = 0;
  for (const AllocationEvent& e : events) {
    if (e.device != device) continue;
    if (e.allocated) {
      live[e.ptr] = next_id;
      out << "+ " << next_id++ << ' ' << e.bytes << ' ' << (e.op.empty() ? "-" : e.op) << ' ' << e.scope
          << '\n';
    } else {
      auto it = live.find(e.ptr);
      if (it == live.end()) continue;
      out << "- " << it->second << '\n';
      live.erase(it);
    }
    ++written;
  }
  if (!out.flush()) throw IOError("loom_bench --allocation-trace: writing '" + o.allocation_trace + "' failed");
  return written;
}

nlohmann::json run(const Options& o) {
  Device device = Device::parse(o.device);
  check_device_usable(device, "loom_bench --device");
  // JAX's default GPU matmul precision for f32 allows TF32; match it so f32 compares like for like.
  set_allow_tf32(true);
  set_attention_implementation(parse_attention_implementation(o.attention, "--attention"));
  set_conv_autotune(o.conv_autotune);
  set_gemm_autotune(o.gemm_autotune);
  std::unique_ptr<AllocationTrace> allocations;
  if (!o.allocation_trace.empty()) allocations = std::make_unique<AllocationTrace>();
  Workload w = make_workload(o, device);
  const bool bf16 = o.precision == "bf16";

  // init's variables are only the state's start: nothing else keeps them, so the initial params
  // are not held beside the state for the whole run (as JAX's donated first step frees them).
  train::TrainState state = [&] {
    Tree variables = w.model.init(random::key(42), w.inputs);
    Tree extra = variables;  // batch_stats for ResNet
    extra.erase("params");
    return train::TrainState::create(variables["params"], w.tx, extra);
  }();
  const int64_t n_params = state.params.total_size();

  // One training step from `s` with dropout key `dropout_key`: the next state and the loss.
  auto train_step = [&](const train::TrainState& s, const random::Key& dropout_key) {
    auto loss_fn = [&](const Tree& params) {
      Tree vars;
      vars.insert("params", params);
      for (const auto& [name, col] : s.extra.items()) vars.insert(name, col);
      Tensor x = bf16 && is_floating(w.inputs.dtype()) ? w.inputs.to(DType::BF16) : w.inputs;
      auto [logits, updates] =
          w.model.apply(vars, x, true, dropout_key);
      // The loss in float32 as JAX's `logits.astype(f32)`, without the float32 copy of the logits,
      // over the logits as the model returns them (a reshape would copy padded rows).
      Tensor loss = mean(softmax_cross_entropy_with_integer_labels(logits, w.labels, DType::F32));
      return std::pair{loss, updates};
    };
    // Mixed precision as in the JAX script: f32 master params cast to bf16 for the forward and
    // backward, loss in f32. Differentiating with respect to the bf16 copy and casting the
    // gradients back gives the f32 gradients of casting inside loss_fn, bit for bit, with one
    // kernel for each cast of the whole tree (core/ops/cast.h).
    const Tree params = bf16 ? cast_floating(s.params, DType::BF16) : s.params;
    auto [loss, updates, param_grads] = value_and_grad_aux(loss_fn)(params);
    const Tree grads = bf16 ? cast_like(param_grads, s.params) : param_grads;
    return std::pair{s.apply_gradients(grads, updates.empty() ? std::optional<Tree>()
                                                              : std::optional<Tree>(updates)),
                     loss};
  };
  // --graph: the same step replayed as one CUDA graph (core/jit.h), its state donated as JAX's
  // (the optimizer writes the new state over the old), the dropout key passed in as a tensor.
  Jit graph_step = jit([&](const Tree& in) {
    auto [next, loss] =
        train_step(state.load_state_dict(in["state"]), random::wrap_key_data(in["rng"].tensor()));
    Tree out;
    out.insert("state", next.state_dict());
    out.insert("loss", loss);
    return out;
  }, {.warmup = 1, .donate_inputs = true, .device_launch = o.graph_launch == "device"});
  auto dropout_key = [](int64_t i) { return random::fold_in(random::key(7), uint32_t(i)); };

  double enqueue_ms = 0;  // host time to queue the step, up to the loss read of the last step
  double jit_call_ms = 0;  // the part of it inside the Jit: loading the inputs and the launch
  auto step = [&](int64_t i) {
    auto queued_from = Clock::now();
    Tensor loss;
    if (o.graph) {
      Tree in;
      in.insert("state", state.state_dict());
      in.insert("rng", random::key_data(dropout_key(i)).to(device));
      auto called_at = Clock::now();
      Tree out = graph_step(in);
      jit_call_ms = std::chrono::duration<double, std::milli>(Clock::now() - called_at).count();
      loss = out["loss"].tensor();
      state = state.load_state_dict(out["state"]);
    } else {
      std::tie(state, loss) = train_step(state, dropout_key(i));
    }
    enqueue_ms = std::chrono::duration<double, std::milli>(Clock::now() - queued_from).count();
    double v = loss.item<double>();  // waits for this step's kernels
    synchronize(device);
    return v;
  };

  double loss = 0;
  for (int64_t i = 0; i < o.warmup; ++i) loss = step(i);
  nlohmann::json r;
#if LOOM_CUDA
  const unsigned long long waits_before = cuda::host_wait_count();
  std::string why;
  if (o.kernel_trace && device.is_cuda() && !bench::kernel_trace_start(&why))
    r["kernel_trace_error"] = why;
#endif
  std::vector<double> ms, host_ms, jit_ms, launch_ms;
  for (int64_t i = 0; i < o.steps; ++i) {
    auto t0 = Clock::now();
    loss = step(o.warmup + i);
    ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
    host_ms.push_back(enqueue_ms);
    if (std::optional<JitGraphInfo> info = graph_step.graph_info()) {
      jit_ms.push_back(jit_call_ms);
      launch_ms.push_back(info->last_launch_ms);
    }
  }
#if LOOM_CUDA
  if (device.is_cuda()) {
    // Each step ends with one loss read and one synchronize of the benchmark's own.
    r["host_waits_per_step"] = double(cuda::host_wait_count() - waits_before) / double(o.steps) - 2;
    if (o.kernel_trace && !r.contains("kernel_trace_error")) {
      double total = 0, launches = 0;
      nlohmann::json top = nlohmann::json::array();
      for (const bench::KernelTime& k : bench::kernel_trace_stop()) {
        total += k.total_ms;
        launches += double(k.calls);
        if (top.size() < 40)
          top.push_back({{"name", k.name.substr(0, 160)},
                         {"calls_per_step", double(k.calls) / double(o.steps)},
                         {"ms_per_step", k.total_ms / double(o.steps)}});
      }
      r["kernel_ms_per_step"] = total / double(o.steps);
      // Under a graph each kernel also costs a launch gap: the count says how many there are.
      r["kernels_per_step"] = launches / double(o.steps);
      r["kernels"] = top;
    }
  }
#endif

  if (allocations) {
    r["allocation_events"] = write_allocation_trace(allocations->events(), device, o);
    allocations.reset();
  }
  const double med = median(ms);
  r["median_ms"] = med;
  // On a GPU: when host_enqueue_ms approaches median_ms the step is bound by the host's launches
  // (what CUDA graph capture removes); on the CPU the two are the same work.
  r["host_enqueue_ms"] = median(host_ms);
  // Where a replayed step's host time goes: the tree bookkeeping around the Jit (the rest of
  // host_enqueue_ms), loading the inputs (jit_call_ms less the launch), and the graph launch,
  // whose cost grows with the graph's nodes.
  if (std::optional<JitGraphInfo> info = graph_step.graph_info(); info && !jit_ms.empty()) {
    r["jit_call_ms"] = median(jit_ms);
    r["graph_launch_ms"] = median(launch_ms);
    r["graph_nodes"] = {{"kernels", info->kernel_nodes}, {"copies", info->copy_nodes},
                        {"memsets", info->memset_nodes}, {"other", info->other_nodes},
                        {"edges", info->edges}, {"straight_line", info->straight_line}};
    r["graph_device_launch"] = info->device_launched;
    if (!info->device_launch_refusal.empty())
      r["graph_device_launch_refused"] = info->device_launch_refusal;
  }
  r["mean_ms"] = std::accumulate(ms.begin(), ms.end(), 0.0) / double(ms.size());
  r["min_ms"] = *std::min_element(ms.begin(), ms.end());
  r["max_ms"] = *std::max_element(ms.begin(), ms.end());
  r["throughput"] = w.items / (med / 1000.0);
  r["throughput_unit"] = w.unit;
  r["params"] = n_params;
  r["final_loss"] = std::isfinite(loss) ? nlohmann::json(loss) : nlohmann::json(nullptr);
  if (device.is_cuda()) {
    MemoryStats s = memory_stats(device);
    r["peak_mem_mb"] = double(s.peak_allocated) / (1 << 20);
    r["device_mallocs"] = s.num_device_mallocs;
  } else {
    r["peak_mem_mb"] = nullptr;  // the CPU has no allocator statistics; see host_max_rss_mb
  }
  if (w.layers > 0 && device.is_cuda()) {  // against a GPU's peak (--peak-tflops)
    // llm.c's gpt2_estimate_mfu: 6N + 6·L·C·T FLOPs per token.
    const double flops_per_token =
        6.0 * double(n_params) + 6.0 * double(w.layers * w.channels * w.seq);
    r["mfu"] = flops_per_token * w.items / (med / 1000.0) / (o.peak_tflops * 1e12);
  } else {
    r["mfu"] = nullptr;
  }
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  Options o = parse(argc, argv);
  nlohmann::json line = {{"framework", "loom"},   {"model", o.model},
                         {"device", o.device},    {"precision", o.precision},
                         {"batch", o.batch},      {"steps", o.steps},
                         {"warmup", o.warmup}};
  if (o.model.rfind("gpt2", 0) == 0 || o.model == "transformer-lm") line["seq"] = o.seq;
  if (o.graph) line["graph"] = true;
  if (o.graph && o.graph_launch != "host") line["graph_launch"] = o.graph_launch;
  if (o.attention != "composed") line["attention"] = o.attention;
  if (o.model == "resnet50") line["image"] = o.image;
  if (o.sync_batch_norm) line["sync_batch_norm"] = true;
  if (o.conv_autotune) line["conv_autotune"] = true;
  if (o.gemm_autotune) line["gemm_autotune"] = true;
  if (o.dropout != 0.0) line["dropout"] = o.dropout;
  int rc = 0;
  try {
    for (Fusion f : parse_fusions(o.fusions_off)) set_fusion_enabled(f, false);
    std::vector<std::string> off;
    for (Fusion f : all_fusions())
      if (!fusion_enabled(f)) off.emplace_back(fusion_name(f));
    if (!off.empty()) line["fusions_off"] = off;
    line.update(run(o));
  } catch (const std::exception& e) {
    std::string what = e.what();
    // The zoo names its known models when it does not know one: that is "not available yet",
    // not a failure of the benchmark.
    bool missing = what.find("unknown model") != std::string::npos;
    line["error"] = (missing ? "model not available: " : "") + what;
    rc = missing ? 0 : 1;
  }
  struct rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  line["host_max_rss_mb"] = double(ru.ru_maxrss) / 1024.0;
  line["cpu_blas"] = cpu_blas_kernels();
  // Shapes whose algorithms were timed (in the warm-up; one inside the timed steps would mean a
  // shape met first inside a capture, or one that was not cached).
  if (o.conv_autotune) line["conv_timings"] = conv_timings();
  if (o.gemm_autotune) line["gemm_timings"] = gemm_timings();
  std::cout << line.dump() << std::endl;
  return rc;
}
