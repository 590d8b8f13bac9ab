#include "train/trainer.h"

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <iostream>
#include <optional>
#include <sstream>
#include <tuple>

#include "core/debug_nans.h"
#include "core/grad.h"
#include "core/jit.h"
#include "core/ops/attention.h"
#include "core/ops/cast.h"
#include "core/ops/elementwise.h"
#include "core/ops/loss.h"
#include "core/ops/reduce.h"
#include "modules/module.h"
#include "optim/loss_scale.h"
#include "train/checkpoint.h"
#include "train/data/loader.h"
#include "train/dist/dist.h"
#include "train/dist/gradient_reducer.h"
#include "train/dist/zero.h"
#include "train/metrics/jsonl_writer.h"
#include "train/metrics/png_plot.h"
#include "train/metrics/progress.h"
#include "train/metrics/tensorboard_writer.h"
#include "train/optimizer_factory.h"
#include "train/train_state.h"

namespace loom::train {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

/// Logits [..., C] and integer labels [...] flattened to [N, C] and [N].
std::pair<Tensor, Tensor> flatten_for_loss(const Tensor& logits, const Tensor& labels) {
  return {logits.reshape({-1, logits.dim(-1)}), labels.reshape({-1})};
}

/// Number of correct predictions, as an f32 device scalar (no host sync).
Tensor count_correct(const Tensor& logits, const Tensor& labels) {
  auto [l, y] = flatten_for_loss(logits, labels);
  return sum(equal(argmax(l, -1), y.to(DType::I32)).to(DType::F32));
}

/// {"params": ..., <other collections>} for apply.
Tree variables_of(const Tree& params, const Tree& extra) {
  Tree vars;
  vars.insert("params", params);
  for (const auto& [name, col] : extra.items()) vars.insert(name, col);
  return vars;
}

}  // namespace

nlohmann::json TrainConfig::to_json() const {
  return {{"model", model},           {"dataset", dataset},       {"epochs", epochs},
          {"steps", steps},           {"batch_size", batch_size}, {"optimizer", optimizer},
          {"learning_rate", learning_rate}, {"schedule", schedule}, {"warmup_steps", warmup_steps},
          {"momentum", momentum},     {"weight_decay", weight_decay}, {"seed", seed},
          {"sequence_length", sequence_length}, {"dropout", dropout}, {"device", device},
          {"debug_nans", debug_nans},
          {"precision", precision}, {"loss_scale_period", loss_scale_period},
          {"attention", attention},
          {"skip_nonfinite", skip_nonfinite},
          {"max_consecutive_nonfinite", max_consecutive_nonfinite}, {"zero", zero}, {"jit", jit}};
}

namespace {

/// ValueError "--flag 'value' is not one of: a, b, c" unless `value` is in `allowed`.
void check_one_of(const std::string& flag, const std::string& value,
                  const std::vector<std::string>& allowed) {
  if (std::find(allowed.begin(), allowed.end(), value) != allowed.end()) return;
  std::string list;
  for (const auto& a : allowed) list += (list.empty() ? "" : ", ") + a;
  LOOM_THROW(ValueError, flag, " '", value, "' is not one of: ", list);
}

}  // namespace

void TrainConfig::validate() const {
  LOOM_CHECK(batch_size > 0, ValueError, "--batch-size must be positive, got ", batch_size);
  LOOM_CHECK(epochs > 0 || steps > 0, ValueError, "--epochs or --steps must be positive, got ",
             epochs, " and ", steps);
  LOOM_CHECK(steps >= 0, ValueError, "--steps must be >= 0 (0: use --epochs), got ", steps);
  LOOM_CHECK(learning_rate > 0, ValueError, "--lr must be positive, got ", learning_rate);
  LOOM_CHECK(warmup_steps >= 0, ValueError, "--warmup-steps must be >= 0, got ", warmup_steps);
  LOOM_CHECK(momentum >= 0 && momentum < 1, ValueError, "--momentum must be in [0, 1), got ", momentum);
  LOOM_CHECK(weight_decay >= 0, ValueError, "--weight-decay must be >= 0, got ", weight_decay);
  LOOM_CHECK(keep_checkpoints > 0, ValueError, "--keep must be positive, got ", keep_checkpoints);
  LOOM_CHECK(checkpoint_every >= 0, ValueError,
             "--checkpoint-every must be >= 0 (0: each epoch), got ", checkpoint_every);
  LOOM_CHECK(eval_every >= 0, ValueError, "--eval-every must be >= 0 (0: each epoch), got ", eval_every);
  LOOM_CHECK(log_every > 0, ValueError, "--log-every must be positive, got ", log_every);
  LOOM_CHECK(max_eval_examples >= 0, ValueError, "--max-eval-examples must be >= 0 (0: all), got ",
             max_eval_examples);
  LOOM_CHECK(sequence_length > 0, ValueError, "--seq-len must be positive, got ", sequence_length);
  LOOM_CHECK(dropout >= 0 && dropout < 1, ValueError, "--dropout must be in [0, 1), got ", dropout);
  LOOM_CHECK(loss_scale_period > 0, ValueError, "--loss-scale-period must be positive, got ",
             loss_scale_period);
  LOOM_CHECK(max_consecutive_nonfinite >= 0, ValueError,
             "--max-consecutive-nonfinite must be >= 0, got ", max_consecutive_nonfinite);
  check_one_of("--model", model, model_names());
  // All element-wise, so --zero shards each exactly (train/dist/zero.h); one that is not (lamb,
  // clipping by global norm) would need refusing with --zero.
  check_one_of("--optimizer", optimizer, {"sgd", "momentum", "adam", "adamw"});
  check_one_of("--schedule", schedule, {"constant", "cosine"});
  check_one_of("--precision", precision, {"f32", "bf16", "f16"});
  check_one_of("--attention", attention, {"composed", "cudnn", "fused"});
  if (device != "auto") {
    try {
      Device::parse(device);
    } catch (const DeviceError&) {
      LOOM_THROW(ValueError, "--device '", device, "' is not one of: auto, cpu, cuda, cuda:N");
    }
  }
  LOOM_CHECK(!run_dir.empty(), ValueError, "--run-dir must not be empty");
  std::error_code ec;
  LOOM_CHECK(!std::filesystem::exists(run_dir, ec) || std::filesystem::is_directory(run_dir, ec),
             ValueError, "--run-dir '", run_dir, "' exists and is not a directory; give a "
             "directory for checkpoints and metrics");
}

Device resolve_device(const std::string& name) {
  if (name == "auto") return default_device();
  Device d = Device::parse(name);
  check_device_usable(d, "--device");
  return d;
}

EvalResult evaluate(const ZooModel& model, const Tree& variables, const Dataset& data,
                    int64_t batch_size, Device device, int64_t max_examples,
                    int64_t sequence_length) {
  if (data.is_text()) {  // windows of sequence_length tokens; as many as the split holds
    LOOM_CHECK(data.size() > sequence_length + 1, ValueError, "evaluate: the test split of '",
               data.name, "' has ", data.size(), " tokens, fewer than a window of ",
               sequence_length + 1);
    batch_size = std::max<int64_t>(1, std::min(batch_size, (data.size() - 1) / sequence_length));
  }
  DataLoader loader(data, {.batch_size = batch_size, .shuffle = false, .drop_last = data.is_text(),
                           .sequence_length = data.is_text() ? sequence_length : 0,
                           .device = device});
  int64_t batches = loader.batches_per_epoch();
  Tensor loss_sum = scalar(0, DType::F32, device), correct = scalar(0, DType::F32, device);
  int64_t count = 0;
  for (int64_t b = 0; b < batches; ++b) {
    if (max_examples > 0 && count >= max_examples) break;
    Batch batch = loader.next();
    Tensor logits = model.apply(variables, batch.inputs, false, random::Key{}).first;
    auto [l, y] = flatten_for_loss(logits, batch.labels);
    loss_sum = loss_sum + sum(softmax_cross_entropy_with_integer_labels(l, y)).to(DType::F32);
    correct = correct + count_correct(logits, batch.labels);
    count += batch.labels.numel();
  }
  return {loss_sum.item<double>() / double(count), correct.item<double>() / double(count), count};
}

TrainSummary run_training(const TrainConfig& cfg, std::ostream& out) {
  cfg.validate();
  DebugNansScope debug_nans(cfg.debug_nans);
  AttentionImplementationGuard attention_preference(
      parse_attention_implementation(cfg.attention, "--attention"));
  // Data parallelism: under `loom launch`, mpirun or SLURM every rank trains on its shard of
  // each global batch and averages gradients, as a Flax step does with lax.pmean; rank 0 logs
  // and writes. Alone, this is a world of one and costs nothing.
  dist::init();
  const int world = dist::world_size(), rank = dist::rank();
  const bool main_rank = dist::is_main();
  LOOM_CHECK(cfg.batch_size % world == 0, ValueError, "--batch-size ", cfg.batch_size,
             " must be a multiple of the number of ranks (", world, ")");
  Device device = resolve_device(cfg.device);
  auto load = [&](Split split) {
    try {
      return load_dataset(cfg.dataset, split);
    } catch (const ValueError& e) {  // a malformed name; missing files are IOErrors naming the path
      LOOM_THROW(ValueError, "--dataset: ", e.what());
    }
  };
  Dataset train_set = load(Split::Train);
  Dataset test_set = load(Split::Test);
  // Data-parallel ResNets normalise with the global batch's statistics (synchronised BatchNorm).
  ModelSpec spec{.num_classes = train_set.is_text() ? 256 : train_set.num_classes,
                 .sequence_length = cfg.sequence_length,
                 .batch_axis = world > 1 ? std::optional<std::string>("batch") : std::nullopt,
                 .dropout_rate = cfg.dropout};
  ZooModel model = make_model(cfg.model, spec);

  DataLoader loader(train_set, {.batch_size = cfg.batch_size, .seed = cfg.seed,
                                .sequence_length = train_set.is_text() ? cfg.sequence_length : 0,
                                .device = device, .shard_index = rank, .shard_count = world});
  const int64_t per_epoch = loader.batches_per_epoch();
  const int64_t total_steps = cfg.steps > 0 ? cfg.steps : cfg.epochs * per_epoch;
  OptimizerChoice opt = make_optimizer(cfg, total_steps);
  const DType compute = cfg.precision == "f16"    ? DType::F16
                        : cfg.precision == "bf16" ? DType::BF16
                                                  : DType::F32;
  const bool loss_scaling = cfg.precision == "f16";  // make_optimizer added dynamic_loss_scale
  const bool skipping = loss_scaling || cfg.skip_nonfinite;

  // create_train_state: init on one example batch, params + batch_stats, optimizer state.
  random::Key root = random::key(int64_t(cfg.seed));
  // init's variables (and its example batch) are only the state's start: nothing else keeps
  // them, so the initial params are not held beside the state for the whole run.
  TrainState state = [&] {
    Tensor sample = loader.make_batch(0, 0).inputs.to(device);
    Tree variables = model.init(random::fold_in(root, 0), sample);
    if (world > 1) variables = dist::broadcast(variables, 0);  // every rank starts from rank 0's
    Tree extra = variables;  // every collection but params (e.g. batch_stats)
    extra.erase("params");
    return TrainState::create(variables["params"], opt.tx, extra);
  }();

  std::filesystem::create_directories(cfg.run_dir);
  CheckpointManager checkpoints(cfg.run_dir + "/checkpoints", cfg.keep_checkpoints);
  int64_t start_step = 0;
  if (cfg.resume && checkpoints.latest_step()) {
    auto [restored, meta] = checkpoints.restore_into(state.state_dict());
    state = state.load_state_dict(restored);
    start_step = meta.at("step").get<int64_t>();
    loader.seek(meta.at("epoch").get<int64_t>(), meta.at("batch").get<int64_t>());
    if (main_rank) out << "loom: resumed " << cfg.run_dir << " at step " << start_step << "\n";
  } else if (!cfg.resume && checkpoints.latest_step() && main_rank) {
    out << "loom: starting afresh in " << cfg.run_dir << ": its first checkpoint replaces the "
        << "earlier run's (up to step " << *checkpoints.latest_step() << ")\n";
  }
  // ZeRO-1: from here on state.opt_state is this rank's shard of the full state built above.
  std::optional<dist::ShardedOptimizer> zero;
  if (cfg.zero && world > 1) {
    zero.emplace(opt.tx, state.params, skipping);
    state.opt_state = zero->load_full_state(state.opt_state);
  }
  // The optimizer step; under ZeRO-1 the sharded update, which averages the local gradients.
  auto apply_gradients = [&](const TrainState& s, const Tree& grads, std::optional<Tree> new_extra) {
    if (!zero) return s.apply_gradients(grads, std::move(new_extra));
    TrainState next = s;
    next.step = s.step + 1.0;
    next.params = zero->step(s.params, grads);
    next.opt_state = zero->state();
    if (new_extra) next.extra = std::move(*new_extra);
    return next;
  };
  // One training step as a function of tensors only: {"state", "inputs", "labels", "rng" (the
  // step's dropout key data)} -> {"state", "loss", "correct"}, so that on one GPU loom::jit can
  // replay it as one CUDA graph, the state donated (updated in place). `hook_step` is the step
  // number a grads_hook sees (such runs are never captured).
  int64_t hook_step = 0;
  auto train_step = [&](const Tree& in) {
    const TrainState s = state.load_state_dict(in["state"]);
    const Tensor inputs = in["inputs"].tensor(), labels = in["labels"].tensor();
    const random::Key dropout_key = random::wrap_key_data(in["rng"].tensor());
    // jmp's mixed policy: float32 params cast to the compute dtype inside the differentiated
    // function (so gradients arrive in float32), logits and loss back in float32. In one
    // process the compute-dtype copy is differentiated instead and its gradients cast back by
    // one kernel (cast_like): the same gradients bit for bit, without a cast kernel per leaf in
    // the backward. Across ranks the cast stays inside, so gradients are averaged in float32.
    const bool cast_outside = compute != DType::F32 && world == 1;
    auto loss_fn = [&](const Tree& params) {
      Tree p = compute == DType::F32 || cast_outside ? params : cast_floating(params, compute);
      Tensor x = compute != DType::F32 && is_floating(inputs.dtype()) ? inputs.to(compute) : inputs;
      auto [logits, updates] = model.apply(variables_of(p, s.extra), x, true, dropout_key);
      logits = logits.to(DType::F32);
      auto [l, y] = flatten_for_loss(logits, labels);
      Tensor loss = mean(softmax_cross_entropy_with_integer_labels(l, y));
      Tensor objective = loss_scaling ? loss * optim::current_loss_scale(s.opt_state) : loss;
      return std::pair{objective, std::tuple{loss.detach(), logits.detach(), updates}};
    };
    // Gradients averaged over the ranks: each bucket's all-reduce starts while backward runs.
    // ZeRO-1 takes the local gradients: its reduce-scatter does the averaging.
    const Tree differentiated = cast_outside ? cast_floating(s.params, compute) : s.params;
    auto [objective, aux, differentiated_grads] =
        zero ? value_and_grad_aux(loss_fn)(differentiated)
             : dist::value_and_grad_aux_pmean(loss_fn)(differentiated);
    Tree grads = cast_outside ? cast_like(differentiated_grads, s.params) : differentiated_grads;
    auto& [loss, logits, new_stats] = aux;
    if (cfg.grads_hook) cfg.grads_hook(hook_step, s, grads);
    // A skipped step keeps the old batch statistics too (jmp.select_tree over the whole state),
    // and statistics from a half-precision forward go back to their own dtypes.
    const bool select_stats = !new_stats.empty() && (skipping || compute != DType::F32);
    TrainState next = apply_gradients(
        s, grads, new_stats.empty() || select_stats ? std::optional<Tree>() : std::optional<Tree>(new_stats));
    if (select_stats) {
      Tensor keep_new = skipping ? next.opt_state["last_finite"].tensor() : scalar(1, DType::Bool, device);
      next.extra = optim::select_tree(keep_new, new_stats, s.extra, "batch statistics");
    }
    Tree out;
    out.insert("state", next.state_dict());
    out.insert("loss", loss.to(DType::F32));
    out.insert("correct", count_correct(logits, labels));
    return out;
  };
  // On one GPU the step is replayed as one CUDA graph (core/jit.h), as jax.jit compiles a Flax
  // train step; not across ranks (their all-reduces), nor with a grads_hook or debug-NaNs (both
  // need the host inside the step). A step that cannot be captured runs eagerly, with a note.
  constexpr int kJitWarmup = 2;  // eager calls before the capture
  std::optional<Jit> jitted;
  int jitted_calls = 0;
  if (cfg.jit && device.is_cuda() && world == 1 && !cfg.grads_hook && !cfg.debug_nans)
    jitted.emplace(jit(train_step, {.warmup = kJitWarmup, .donate_inputs = true}));
  if (main_rank)
    out << "loom: training " << cfg.model << " on " << cfg.dataset << " (" << train_set.size()
      << " examples) on " << device.str() << ", " << state.params.total_size() << " parameters, "
      << total_steps << " steps of batch " << cfg.batch_size
        << (world > 1 ? " over " + std::to_string(world) + " ranks" : std::string()) << "\n";
  if (const std::string blas = cpu_blas_kernels(); main_rank && device.is_cpu() && !blas.empty())
    out << "loom: products on " << blas << "\n";

  // Only rank 0 writes metrics and checkpoints; the others log nowhere.
  std::ostringstream discard;
  std::ostream& log = main_rank ? out : discard;
  std::optional<JsonlWriter> metrics;
  std::optional<TensorBoardWriter> events;
  if (main_rank) {
    metrics.emplace(cfg.run_dir + "/metrics.jsonl", /*append=*/start_step > 0);
    events.emplace(cfg.run_dir);
  }
  const bool text = train_set.is_text();
  ProgressBar progress({.total_steps = total_steps, .initial_step = start_step,
                        .unit = text ? "tokens" : "samples", .print_every = cfg.log_every,
                        .terminal = main_rank ? cfg.terminal : std::optional<bool>(false)},
                       log);

  auto save = [&](int64_t step) {
    // Checkpoints hold the full optimizer state whether sharded or not; all ranks gather it.
    Tree state_dict = state.state_dict();
    if (zero) state_dict["opt_state"] = zero->full_state();
    if (!main_rank) return;
    auto [epoch, index] = loader.position();
    // A run started afresh replaces an earlier run's checkpoints at its own steps and later
    // (without, its first save would be refused after the work of a whole interval).
    checkpoints.save(step, state_dict,
                     {{"step", step}, {"epoch", epoch}, {"batch", index}, {"config", cfg.to_json()},
                      {"rng_seed", cfg.seed}},
                     /*overwrite=*/!cfg.resume);
  };
  auto run_eval = [&](int64_t step) {
    EvalResult r = evaluate(model, variables_of(state.params, state.extra), test_set,
                            text ? cfg.batch_size : 500, device, cfg.max_eval_examples,
                            cfg.sequence_length);
    if (!main_rank) return r;
    metrics->write(MetricsRecord{.step = step, .split = "test", .epoch = step / per_epoch,
                                .loss = r.loss, .accuracy = r.accuracy});
    events->add_scalars(step, {{"test/loss", r.loss}, {"test/accuracy", r.accuracy}});
    progress.println("step " + std::to_string(step) + ": test loss " + std::to_string(r.loss) +
                     ", accuracy " + std::to_string(r.accuracy * 100).substr(0, 5) + "%");
    return r;
  };

  auto run_step = [&](const Tree& in) {
    if (!jitted) return train_step(in);
    const bool capturing = jitted_calls++ == kJitWarmup;
    try {
      return (*jitted)(in);
    } catch (const Error& e) {
      if (!capturing) throw;  // a warm-up's or a replay's failure is not the capture's
      // The failed capture changed no tensor: the same inputs run eagerly from here on.
      progress.println(std::string("loom: running every step eagerly: it could not be captured "
                                   "as a CUDA graph (") + e.what() + ")");
      jitted.reset();
      return train_step(in);
    }
  };

  TrainSummary summary;
  int64_t skipped_reported =
      skipping ? state.opt_state["total_notfinite"].tensor().item<int64_t>() : 0;
  const auto t0 = Clock::now();
  auto window_start = Clock::now();
  Tensor loss_acc = scalar(0, DType::F32, device), correct_acc = scalar(0, DType::F32, device);
  int64_t window_items = 0, window_steps = 0;
  for (int64_t step = start_step; step < total_steps; ++step) {
    Batch batch = loader.next();
    Tree in;
    in.insert("state", state.state_dict());
    in.insert("inputs", batch.inputs);
    in.insert("labels", batch.labels);
    in.insert("rng", random::key_data(random::fold_in(random::fold_in(root, 1), uint32_t(step))).to(device));
    hook_step = step;
    Tree result = run_step(in);
    state = state.load_state_dict(result["state"]);

    // The step's mean loss times its examples: the loss is not computed a second time. (Under
    // jit these are the graph's buffers, read here before the next replay overwrites them.)
    loss_acc = loss_acc + result["loss"].tensor() * double(batch.labels.numel());
    correct_acc = correct_acc + result["correct"].tensor();
    window_items += batch.labels.numel();
    ++window_steps;
    const int64_t done = step + 1;
    const bool epoch_end = done % per_epoch == 0;
    if (done % cfg.log_every == 0 || done == total_steps) {
      if (world > 1) {
        loss_acc = dist::psum(loss_acc);
        correct_acc = dist::psum(correct_acc);
        window_items *= world;
      }
      double loss_v = loss_acc.item<double>() / double(window_items);  // the one host sync
      double acc_v = correct_acc.item<double>() / double(window_items);
      double secs = seconds_since(window_start);
      // Skipped steps leave the optimizer's own count, and so its schedule, behind.
      const int64_t skipped =
          skipping ? state.opt_state["total_notfinite"].tensor().item<int64_t>() : 0;
      double lr = opt.learning_rate_at(step - skipped);
      double rate = double(window_items) / secs;
      MetricsRecord rec{.step = done, .split = "train", .epoch = step / per_epoch, .loss = loss_v,
                        .accuracy = acc_v, .lr = lr, .step_time_ms = 1000 * secs / double(window_steps)};
      (text ? rec.tokens_per_sec : rec.samples_per_sec) = rate;
      if (skipping) {
        rec.extra["skipped_steps"] = skipped;
        std::string note;
        if (loss_scaling) {
          double scale = optim::current_loss_scale(state.opt_state).item<double>();
          rec.extra["loss_scale"] = scale;
          note = ", loss scale " + std::to_string(int64_t(scale));
        }
        if (skipped > skipped_reported)
          progress.println("step " + std::to_string(done) + ": skipped " +
                           std::to_string(skipped - skipped_reported) +
                           " step(s) with non-finite gradients (" + std::to_string(skipped) +
                           " in all)" + note);
        skipped_reported = skipped;
      }
      if (main_rank) metrics->write(rec);
      if (main_rank) events->add_scalars(done, {{"train/loss", loss_v}, {"train/accuracy", acc_v}, {"train/lr", lr},
                                {text ? "train/tokens_per_sec" : "train/samples_per_sec", rate}});
      progress.update({.step = done, .epoch = step / per_epoch, .loss = loss_v,
                       .items = window_items, .extra = {{"acc", acc_v}, {"lr", lr}}});
      summary.train_loss = loss_v;
      loss_acc = scalar(0, DType::F32, device);
      correct_acc = scalar(0, DType::F32, device);
      window_items = window_steps = 0;
      window_start = Clock::now();
    }
    // Evaluations and checkpoints are not steps: the window's step time leaves them out.
    const auto paused = Clock::now();
    if ((cfg.eval_every > 0 && done % cfg.eval_every == 0) || (cfg.eval_every == 0 && epoch_end))
      summary.test = run_eval(done);
    if ((cfg.checkpoint_every > 0 && done % cfg.checkpoint_every == 0) ||
        (cfg.checkpoint_every == 0 && epoch_end) || done == total_steps)
      save(done);
    window_start += Clock::now() - paused;
  }
  if (summary.test.examples == 0) summary.test = run_eval(total_steps);
  summary.graph_replayed = jitted && jitted->captured();
  progress.finish();
  summary.steps = total_steps;
  summary.seconds = seconds_since(t0);
  if (!main_rank) return summary;
  metrics->close();
  events->close();
  write_training_plot(cfg.run_dir + "/training.png",
                      training_plot_from_jsonl(read_jsonl(cfg.run_dir + "/metrics.jsonl"),
                                               cfg.model + " on " + cfg.dataset));
  out << "loom: done in " << summary.seconds << " s"
      << (summary.graph_replayed ? " (each step replayed as one CUDA graph)" : "") << ": test accuracy "
      << summary.test.accuracy * 100 << "%, test loss " << summary.test.loss << "; wrote "
      << cfg.run_dir << "/{metrics.jsonl, events.out.tfevents.*, training.png, checkpoints/}\n";
  return summary;
}

}  // namespace loom::train
