#include "apps/commands.h"

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <thread>

#include "apps/launch.h"
#include "core/loom.h"
#include "core/random.h"
#include "train/checkpoint.h"
#include "train/data/loader.h"
#include "train/dist/launch_env.h"
#include "train/sampling.h"

namespace loom::apps {

namespace {
/// CLI::PositiveNumber's message prints the largest double in full; these say what to do.
const CLI::Validator positive_number(
    [](std::string& v) {
      try {
        if (std::stod(v) > 0) return std::string();
      } catch (const std::exception&) {
      }
      return "must be a number greater than 0, got '" + v + "'";
    },
    "> 0");
const CLI::Validator non_negative_number(
    [](std::string& v) {
      try {
        if (std::stod(v) >= 0) return std::string();
      } catch (const std::exception&) {
      }
      return "must be a number >= 0, got '" + v + "'";
    },
    ">= 0");
/// Digits only: CLI11 would read "-1" into an unsigned seed as 2^64 - 1, and its range
/// validators print the largest double in full. Values too large for the option's type are
/// still refused by CLI11's conversion.
CLI::Validator whole_number(bool positive) {
  std::string what = positive ? "> 0" : ">= 0";
  return CLI::Validator(
      [positive, what](std::string& v) {
        bool digits = !v.empty() && v.find_first_not_of("0123456789") == std::string::npos;
        if (digits && (!positive || v.find_first_not_of('0') != std::string::npos)) return std::string();
        return "must be a whole number " + what + ", got '" + v + "'";
      },
      what);
}
const CLI::Validator positive_whole = whole_number(true), non_negative_whole = whole_number(false);
}  // namespace

void add_train_options(CLI::App& cmd, TrainArgs& a) {
  cmd.add_option("--model", a.model, "model: " + [] {
    std::string s;
    for (const auto& n : train::model_names()) s += (s.empty() ? "" : ", ") + n;
    return s;
  }())->capture_default_str();
  cmd.add_option("--dataset", a.dataset,
                 "fashion_mnist, mnist, cifar10:DIR, cifar100:DIR, text:FILE, "
                 "synthetic:HxWxC:CLASSES:N")->capture_default_str();
  cmd.add_option("--epochs", a.epochs, "epochs to train")->capture_default_str()->check(positive_whole);
  cmd.add_option("--steps", a.steps, "train this many steps instead of --epochs")->check(non_negative_whole);
  cmd.add_option("--batch-size", a.batch_size, "examples per step")->capture_default_str()->check(positive_whole);
  cmd.add_option("--optimizer", a.optimizer, "sgd, momentum, adam, adamw")
      ->capture_default_str()->check(CLI::IsMember({"sgd", "momentum", "adam", "adamw"}));
  cmd.add_option("--lr", a.learning_rate, "peak learning rate")->capture_default_str()->check(positive_number);
  cmd.add_option("--schedule", a.schedule, "constant or cosine (warmup then cosine decay)")
      ->capture_default_str()->check(CLI::IsMember({"constant", "cosine"}));
  cmd.add_option("--warmup-steps", a.warmup_steps, "linear warmup steps")->capture_default_str()->check(non_negative_whole);
  cmd.add_option("--momentum", a.momentum, "momentum (sgd with momentum)")->capture_default_str();
  cmd.add_option("--weight-decay", a.weight_decay, "decoupled weight decay (adamw)")->capture_default_str();
  cmd.add_option("--seed", a.seed, "random seed (init, shuffling, dropout)")->capture_default_str()->check(non_negative_whole);
  cmd.add_option("--run-dir", a.run_dir, "checkpoints, metrics.jsonl, TensorBoard events, training.png")->capture_default_str();
  cmd.add_flag("!--no-resume", a.resume, "start afresh even if the run directory has a checkpoint (this run's checkpoints replace it)");
  cmd.add_option("--keep", a.keep_checkpoints, "checkpoints to keep")->capture_default_str()->check(positive_whole);
  cmd.add_option("--checkpoint-every", a.checkpoint_every, "steps between checkpoints (0: each epoch)")->check(non_negative_whole);
  cmd.add_option("--eval-every", a.eval_every, "steps between evaluations (0: each epoch)")->check(non_negative_whole);
  cmd.add_option("--log-every", a.log_every, "steps between metric lines")->capture_default_str()->check(positive_whole);
  cmd.add_option("--max-eval-examples", a.max_eval_examples, "cap evaluation size (0: all)")->check(non_negative_whole);
  cmd.add_option("--seq-len", a.sequence_length, "tokens per example (language models)")->capture_default_str()->check(positive_whole);
  cmd.add_option("--dropout", a.dropout, "dropout rate while training (language models; 0: off)")
      ->capture_default_str()->check(CLI::Range(0.0, 0.999999));
  cmd.add_option("--device", a.device, "auto, cpu, cuda, cuda:N")->capture_default_str();
  cmd.add_flag("--debug-nans", a.debug_nans, "check every op's output for NaN/Inf and name the first offender (slow)");
  cmd.add_option("--nproc", a.nproc, "train data-parallel on N local processes (each on batch-size / N examples)")
      ->capture_default_str();
  cmd.add_flag("--zero", a.zero,
               "with --nproc N (or a launcher): shard the optimizer state over the ranks (ZeRO-1), "
               "the same numbers and checkpoints with 1/N of the state per rank; alone: no effect");
  cmd.add_option("--precision", a.precision,
                 "compute dtype on float32 params: f32, bf16, f16 (f16 adds dynamic loss scaling)")
      ->capture_default_str()->check(CLI::IsMember({"f32", "bf16", "f16"}));
  cmd.add_option("--loss-scale-period", a.loss_scale_period,
                 "with --precision f16: finite steps in a row before the loss scale doubles")
      ->capture_default_str()->check(positive_whole);
  cmd.add_option("--attention", a.attention,
                 "preferred attention: composed, cudnn (cuDNN's flash attention for bf16/f16 on "
                 "a GPU), fused; what it cannot take runs composed")
      ->capture_default_str()->check(CLI::IsMember({"composed", "cudnn", "fused"}));
  cmd.add_flag("!--no-jit", a.jit,
               "on a GPU, run every step eagerly instead of replaying it as one CUDA graph");
  cmd.add_flag("--skip-nonfinite", a.skip_nonfinite,
               "skip steps whose gradients hold Inf/NaN; metrics count them as skipped_steps");
  cmd.add_option("--max-consecutive-nonfinite", a.max_consecutive_nonfinite,
                 "with --skip-nonfinite: apply the update after this many skips in a row")
      ->capture_default_str()->check(non_negative_whole);
}

namespace {

/// This process's command line without `--nproc N` / `--nproc=N`, starting with the path of the
/// running binary, for the ranks to run.
std::vector<std::string> command_without_nproc() {
  std::ifstream in("/proc/self/cmdline", std::ios::binary);
  LOOM_CHECK(in.good(), IOError, "loom train --nproc: cannot read /proc/self/cmdline to start the ranks");
  std::vector<std::string> argv;
  for (std::string arg; std::getline(in, arg, '\0');) argv.push_back(arg);
  std::vector<std::string> command{std::filesystem::read_symlink("/proc/self/exe").string()};
  for (size_t i = 1; i < argv.size(); ++i) {
    if (argv[i] == "--nproc") ++i;  // and its value
    else if (argv[i].rfind("--nproc=", 0) != 0) command.push_back(argv[i]);
  }
  return command;
}

}  // namespace

int run_train(const TrainArgs& args) {
  LOOM_CHECK(args.nproc >= 1, ValueError, "--nproc must be at least 1 (local processes to train "
             "on), got ", args.nproc);
  if (args.nproc > 1) {
    LOOM_CHECK(dist::detect_launch().world_size == 1, ValueError, "--nproc ", args.nproc,
               ": this process already is one rank of ", dist::detect_launch().world_size,
               " (started by ", dist::detect_launch().launcher, "); drop --nproc or the launcher");
    LOOM_CHECK(args.batch_size % args.nproc == 0, ValueError, "--batch-size ", args.batch_size,
               " must be a multiple of --nproc ", args.nproc, " (each process trains on an equal "
               "share of every batch)");
    // The ranks share this host's cores: N processes each running as many OpenMP threads as
    // there are cores would spin against each other.
    if (!std::getenv("OMP_NUM_THREADS")) {
      const unsigned threads = std::max(1u, std::thread::hardware_concurrency() / unsigned(args.nproc));
      ::setenv("OMP_NUM_THREADS", std::to_string(threads).c_str(), 1);
    }
    // `loom launch -n N -- loom train ...`: N ranks on this host over loom's TCP store.
    LaunchArgs launch{.nproc_per_node = args.nproc, .master_port = 0,
                      .command = command_without_nproc()};
    return run_launch(launch);
  }
  train::TrainSummary s = train::run_training(args, std::cout);
  return s.steps > 0 ? 0 : 1;
}

void add_eval_options(CLI::App& cmd, EvalArgs& a) {
  cmd.add_option("--run-dir", a.run_dir, "run directory written by `loom train`")->capture_default_str();
  cmd.add_option("--device", a.device, "auto, cpu, cuda, cuda:N")->capture_default_str();
  cmd.add_option("--batch-size", a.batch_size, "examples per batch")->capture_default_str()->check(positive_whole);
}

namespace {

/// The latest checkpoint of a run: its model, variables (on `device`) and metadata.
struct RestoredRun {
  train::ZooModel model;
  Tree variables;
  nlohmann::json meta;
  train::Dataset test;
};

RestoredRun restore_run(const std::string& run_dir, Device device) {
  train::CheckpointManager checkpoints(run_dir + "/checkpoints");
  LOOM_CHECK(checkpoints.latest_step(), IOError, "no checkpoint in ", run_dir,
             "/checkpoints (train first: loom train --run-dir ", run_dir, ")");
  auto [state, meta] = checkpoints.restore();
  const auto& c = meta.at("config");
  train::Dataset test = train::load_dataset(c.at("dataset").get<std::string>(), train::Split::Test);
  train::ZooModel model = train::make_model(
      c.at("model").get<std::string>(),
      {.num_classes = test.is_text() ? 256 : test.num_classes,
       .sequence_length = c.at("sequence_length").get<int64_t>()});
  Tree vars;
  for (const auto& [name, col] : state.items())
    if (name != "step" && name != "opt_state") vars.insert(name, col);
  vars = tree_map([&](const Tensor& t) { return t.to(device); }, vars);
  return {std::move(model), std::move(vars), std::move(meta), std::move(test)};
}

}  // namespace

int run_eval(const EvalArgs& args) {
  Device device = train::resolve_device(args.device);
  auto [model, vars, meta, test] = restore_run(args.run_dir, device);
  const auto& c = meta.at("config");
  train::EvalResult r = train::evaluate(model, vars, test, args.batch_size, device, 0,
                                         c.at("sequence_length").get<int64_t>());
  std::cout << "step " << meta.at("step").get<int64_t>() << ": test loss " << r.loss
            << ", accuracy " << r.accuracy * 100 << "% over " << r.examples << " examples\n";
  return 0;
}

void add_sample_options(CLI::App& cmd, SampleArgs& a) {
  cmd.add_option("--run-dir", a.run_dir, "run directory of a language model (--model transformer-lm)")->capture_default_str();
  cmd.add_option("--prompt", a.prompt, "text to continue");
  cmd.add_option("--tokens", a.tokens, "bytes to generate")->capture_default_str()->check(positive_whole);
  cmd.add_option("--temperature", a.temperature, "sampling temperature (0: greedy)")->capture_default_str()->check(non_negative_number);
  cmd.add_option("--seed", a.seed, "sampling seed")->capture_default_str()->check(non_negative_whole);
  cmd.add_option("--device", a.device, "auto, cpu, cuda, cuda:N")->capture_default_str();
}

int run_sample(const SampleArgs& args) {
  Device device = train::resolve_device(args.device);
  auto [model, vars, meta, test] = restore_run(args.run_dir, device);
  LOOM_CHECK(test.is_text(), ValueError, "loom sample: the run in ", args.run_dir, " trained ",
             meta.at("config").at("model").get<std::string>(), " on ",
             meta.at("config").at("dataset").get<std::string>(),
             ", not a language model on a text:FILE dataset");
  std::string text = train::sample_text(
      model, vars, args.prompt,
      {.max_new_tokens = args.tokens, .temperature = args.temperature,
       .context = meta.at("config").at("sequence_length").get<int64_t>(), .seed = args.seed},
      device);
  std::cout << args.prompt << text << "\n";
  return 0;
}

void add_summary_options(CLI::App& cmd, SummaryArgs& a) {
  cmd.add_option("--model", a.model, "model name")->capture_default_str();
  cmd.add_option("--dataset", a.dataset, "dataset whose shapes the model is built for")->capture_default_str();
}

int run_summary(const SummaryArgs& args) {
  train::Dataset d = train::load_dataset(args.dataset, train::Split::Test);
  train::ZooModel model = train::make_model(args.model, {.num_classes = d.is_text() ? 256 : d.num_classes});
  train::DataLoader loader(d, {.batch_size = 1, .shuffle = false, .sequence_length = d.is_text() ? 128 : 0, .prefetch = 0});
  std::cout << model.summary(random::key(0), loader.make_batch(0, 0).inputs);
  return 0;
}

int run_info() {
  std::vector<Device> devices{Device::cpu()};
  for (int i = 0; i < cuda_device_count(); ++i) devices.push_back(Device::cuda(i));
  std::cout << "loom: CUDA backend " << (LOOM_CUDA ? "built" : "not built") << ", "
            << cuda_device_count() << " GPU(s) visible\n";
  for (const Device& d : devices) {
    std::cout << "== " << d.str() << " ==\n";
    Tensor x = arange(6, DType::F32, d).reshape({2, 3});
    std::cout << "x = " << x << "\n";
    std::cout << "gelu(x) * 2 - 1 = " << (gelu(x) * 2.0 - 1.0) << "\n";
    std::cout << "x as bfloat16 = " << x.to(DType::BF16) << "\n";
    std::cout << "jax.random.uniform(key(0), (2, 3)) = " << random::uniform(random::key(0), {2, 3}, DType::F32, 0, 1, d) << "\n";
  }
  return 0;
}

}  // namespace loom::apps
