// The `loom` command: train, eval, sample, summary, launch, info. With no subcommand it runs loom's main job,
// `loom train` with its defaults (the seed's CNN on Fashion-MNIST).
#include <CLI/CLI.hpp>

#include <iostream>

#include "apps/commands.h"
#include "apps/launch.h"
#include "core/error.h"

int main(int argc, char** argv) {
  CLI::App app{"loom: Flax Linen's programming model in C++, on CPUs and NVIDIA GPUs"};
  app.require_subcommand(0, 1);
  loom::apps::TrainArgs train_args;
  CLI::App* train = app.add_subcommand("train", "train a model (the default command)");
  loom::apps::add_train_options(*train, train_args);
  loom::apps::EvalArgs eval_args;
  CLI::App* eval = app.add_subcommand("eval", "evaluate the latest checkpoint of a run");
  loom::apps::add_eval_options(*eval, eval_args);
  loom::apps::SummaryArgs summary_args;
  CLI::App* summary = app.add_subcommand("summary", "print a model's module table (tabulate)");
  loom::apps::add_summary_options(*summary, summary_args);
  loom::apps::SampleArgs sample_args;
  CLI::App* sample = app.add_subcommand("sample", "generate text from a language-model run");
  loom::apps::add_sample_options(*sample, sample_args);
  CLI::App* info = app.add_subcommand("info", "show devices, the tensor core and random keys");
  loom::apps::LaunchArgs launch_args;
  CLI::App* launch = app.add_subcommand("launch", "start N ranks of a command (data parallelism)");
  loom::apps::add_launch_options(*launch, launch_args);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  try {
    if (*launch) return loom::apps::run_launch(launch_args);
    if (*eval) return loom::apps::run_eval(eval_args);
    if (*sample) return loom::apps::run_sample(sample_args);
    if (*summary) return loom::apps::run_summary(summary_args);
    if (*info) return loom::apps::run_info();
    return loom::apps::run_train(train_args);  // `loom` alone == `loom train`
  } catch (const loom::Error& e) {
    std::cerr << "loom: error: " << e.what() << "\n";
    return 1;
  } catch (const std::exception& e) {
    std::cerr << "loom: error: " << e.what() << "\n";
    return 1;
  }
}
