// The training loop behind `loom train`: a Flax-style step (loss_fn, value_and_grad,
// apply_gradients, batch_stats through the mutable collection, a dropout key per step from
// fold_in), periodic evaluation, progress on the terminal, metrics as JSON lines and TensorBoard
// events, atomic checkpoints with exact resume, and a PNG plot at the end.
#pragma once
#include <cstdint>
#include <functional>
#include <iosfwd>
#include <string>

#include <nlohmann/json.hpp>

#include "core/device.h"
#include "core/tree.h"
#include "train/data/dataset.h"
#include "train/model_zoo.h"
#include "train/train_state.h"

namespace loom::train {

struct TrainConfig {
  std::string model = "cnn";
  std::string dataset = "fashion_mnist";
  int64_t epochs = 4;
  int64_t steps = 0;             // > 0: train this many steps instead of `epochs`
  int64_t batch_size = 128;
  std::string optimizer = "adamw";  // sgd, momentum, adam, adamw
  double learning_rate = 2e-3;
  std::string schedule = "cosine";  // constant, cosine (with warmup)
  int64_t warmup_steps = 100;
  double momentum = 0.9;
  double weight_decay = 1e-4;
  uint64_t seed = 0;
  std::string run_dir = "runs/default";  // checkpoints, metrics.jsonl, events, training.png
  bool resume = true;                    // continue from the latest checkpoint in run_dir
  int keep_checkpoints = 3;
  int64_t checkpoint_every = 0;  // steps; 0: at the end of every epoch
  int64_t eval_every = 0;        // steps; 0: at the end of every epoch
  int64_t log_every = 50;        // steps between metric lines (each costs one host sync)
  int64_t max_eval_examples = 0;  // 0: the whole test split
  int64_t sequence_length = 128;  // language models
  double dropout = 0.1;           // language models: dropout rate while training (0: off)
  std::string device = "auto";    // auto, cpu, cuda, cuda:N
  std::optional<bool> terminal;   // progress bar style; default: detect
  bool debug_nans = false;        // check every op's output for NaN/Inf (core/debug_nans.h)
  // Compute dtype: "f32"; "bf16" or "f16" run the model in that dtype on float32 params (jmp's
  // mixed policy); "f16" adds dynamic loss scaling (optim::dynamic_loss_scale), which skips
  // steps whose gradients overflow.
  std::string precision = "f32";
  int64_t loss_scale_period = 2000;  // f16: finite steps in a row before the loss scale doubles
  // dot_product_attention's preferred implementation while training: "composed", "cudnn"
  // (cuDNN's flash attention, for CUDA bf16/f16) or "fused"; calls the preferred one cannot take
  // (the CPU, float32) run composed (core/ops/attention.h).
  std::string attention = "composed";
  bool skip_nonfinite = false;  // skip steps with Inf/NaN gradients (optim::apply_if_finite)
  int64_t max_consecutive_nonfinite = 10;  // ...unless this many came in a row (Optax's give-up)
  // Data parallel: each rank keeps 1/N of the optimizer state (ZeRO-1, dist::ShardedOptimizer);
  // the numbers and the checkpoints are the unsharded run's. No effect in a world of one.
  bool zero = false;
  // On one GPU: replay each step as one CUDA graph (loom::jit, the state donated), as jax.jit
  // compiles a Flax train step. No effect on the CPU or over several ranks.
  bool jit = true;
  /// For tests: called with each step's gradients before the update (`step` counts from 0,
  /// `state` is the state the update starts from), e.g. to inject an Inf. Not in to_json. With
  /// `zero` over several ranks these are the rank's local gradients, not yet averaged.
  std::function<void(int64_t step, const TrainState& state, Tree& grads)> grads_hook;

  nlohmann::json to_json() const;
  void validate() const;  // throws ValueError naming the bad setting and the allowed values
};

struct EvalResult {
  double loss = 0, accuracy = 0;
  int64_t examples = 0;
};

struct TrainSummary {
  int64_t steps = 0;
  bool graph_replayed = false;  // the steps ran as one captured CUDA graph (TrainConfig::jit)
  double seconds = 0;
  double train_loss = 0;
  EvalResult test;
};

TrainSummary run_training(const TrainConfig& config, std::ostream& out);

/// Mean loss and accuracy of a classifier (or next-token loss and accuracy of a language model,
/// over consecutive windows of `sequence_length` tokens) over a dataset split: no dropout,
/// running statistics.
EvalResult evaluate(const ZooModel& model, const Tree& variables, const Dataset& data,
                    int64_t batch_size, Device device, int64_t max_examples = 0,
                    int64_t sequence_length = 128);

/// "auto" -> default_device(); otherwise Device::parse, checked to be usable.
Device resolve_device(const std::string& name);

}  // namespace loom::train
