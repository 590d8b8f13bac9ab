// The subcommands of `loom`: their options and what they run.
#pragma once
#include <CLI/CLI.hpp>

#include <string>

#include "train/trainer.h"

namespace loom::apps {

struct TrainArgs : train::TrainConfig {
  /// > 1: train data-parallel on this many local processes (`loom launch -n N` of this command).
  int nproc = 1;
};
void add_train_options(CLI::App& cmd, TrainArgs& args);
int run_train(const TrainArgs& args);

struct EvalArgs {
  std::string run_dir = "runs/default";
  std::string device = "auto";
  int64_t batch_size = 500;
};
void add_eval_options(CLI::App& cmd, EvalArgs& args);
int run_eval(const EvalArgs& args);

struct SummaryArgs {
  std::string model = "cnn";
  std::string dataset = "fashion_mnist";  // decides the input shape and number of classes
};
void add_summary_options(CLI::App& cmd, SummaryArgs& args);
int run_summary(const SummaryArgs& args);

struct SampleArgs {
  std::string run_dir = "runs/default";
  std::string prompt = "";
  int64_t tokens = 200;
  double temperature = 0.8;
  uint64_t seed = 0;
  std::string device = "auto";
};
void add_sample_options(CLI::App& cmd, SampleArgs& args);
int run_sample(const SampleArgs& args);

int run_info();

}  // namespace loom::apps
