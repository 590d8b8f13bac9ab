// loom_launch_test: `loom launch` (apps/launch.{h,cc}) as a standalone program, so the launcher's
// multi-process tests run whatever subcommands apps/main.cc registers.
#include <CLI/CLI.hpp>

#include <iostream>

#include "apps/launch.h"
#include "core/error.h"

int main(int argc, char** argv) {
  CLI::App app{"loom launch: start N ranks of a command with loom's environment"};
  loom::apps::LaunchArgs args;
  loom::apps::add_launch_options(app, args);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  try {
    return loom::apps::run_launch(args);
  } catch (const std::exception& e) {
    std::cerr << "loom launch: error: " << e.what() << "\n";
    return 1;
  }
}
