// `loom launch -n N [--nodes M --node-rank K --master-addr HOST --master-port P] -- CMD ARGS...`:
// starts N copies of CMD on this host with LOOM_RANK, LOOM_WORLD_SIZE, LOOM_LOCAL_RANK,
// LOOM_LOCAL_WORLD_SIZE, LOOM_MASTER_ADDR and LOOM_MASTER_PORT set (dist::init reads them; rank 0
// serves the TCP store). Ranks of node K are K*N .. K*N+N-1. When one copy fails (non-zero exit
// or a signal), the others are terminated (SIGTERM, then SIGKILL after a grace period) so a dead
// rank never leaves its peers hanging; the launcher exits with the first failure's status.
#pragma once
#include <CLI/CLI.hpp>

#include <string>
#include <vector>

namespace loom::apps {

struct LaunchArgs {
  int nproc_per_node = 1;
  int nodes = 1;
  int node_rank = 0;
  std::string master_addr = "127.0.0.1";
  int master_port = 29500;  // 0: pick a free port (single node only)
  double grace_seconds = 5;
  std::vector<std::string> command;
};
void add_launch_options(CLI::App& cmd, LaunchArgs& args);
int run_launch(const LaunchArgs& args);

}  // namespace loom::apps
