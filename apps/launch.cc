#include "apps/launch.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <thread>

#include "core/error.h"
#include "train/dist/tcp_store.h"

namespace loom::apps {
namespace {

std::string describe(int status) {
  if (WIFEXITED(status)) return "exit status " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return std::string("signal ") + strsignal(WTERMSIG(status));
  return "status " + std::to_string(status);
}

int exit_code(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return 1;
}

}  // namespace

void add_launch_options(CLI::App& cmd, LaunchArgs& args) {
  cmd.add_option("-n,--nproc-per-node", args.nproc_per_node, "processes on this host (one per GPU)")
      ->check(CLI::Range(1, 1024));
  cmd.add_option("--nodes", args.nodes, "number of hosts")->check(CLI::Range(1, 65536));
  cmd.add_option("--node-rank", args.node_rank, "this host's index in [0, nodes)");
  cmd.add_option("--master-addr", args.master_addr, "address of the host running rank 0");
  cmd.add_option("--master-port", args.master_port, "port of rank 0's store (0: a free one)");
  cmd.add_option("--grace", args.grace_seconds, "seconds between SIGTERM and SIGKILL");
  cmd.add_option("command", args.command, "the program and its arguments (after --)")
      ->required();
}

int run_launch(const LaunchArgs& a) {
  LOOM_CHECK(!a.command.empty(), ValueError, "loom launch: no command given (loom launch -n N -- CMD)");
  LOOM_CHECK(a.node_rank >= 0 && a.node_rank < a.nodes, ValueError, "loom launch: --node-rank ",
             a.node_rank, " is outside [0, ", a.nodes, ")");
  LOOM_CHECK(a.master_port != 0 || a.nodes == 1, ValueError,
             "loom launch: --master-port 0 (a free port) works on one node only");
  // --master-port 0: the launcher listens on a free port and hands rank 0 that socket open
  // (LOOM_MASTER_LISTEN_FD). A port found free and closed again could be taken while the ranks
  // started (rank 0's bind then failed with "Address already in use" in test runs beside other
  // dist tests).
  const int listen_fd = a.master_port == 0 ? dist::listen_on_port(0) : -1;
  const int port = listen_fd >= 0 ? dist::socket_port(listen_fd) : a.master_port;
  const int world = a.nproc_per_node * a.nodes;

  std::vector<pid_t> pids;
  for (int local = 0; local < a.nproc_per_node; ++local) {
    const int rank = a.node_rank * a.nproc_per_node + local;
    pid_t pid = ::fork();
    LOOM_CHECK(pid >= 0, ValueError, "loom launch: fork failed: ", std::strerror(errno));
    if (pid == 0) {
      // The child: its own process group, so the launcher can signal it and its children.
      ::setpgid(0, 0);
      ::setenv("LOOM_RANK", std::to_string(rank).c_str(), 1);
      ::setenv("LOOM_WORLD_SIZE", std::to_string(world).c_str(), 1);
      ::setenv("LOOM_LOCAL_RANK", std::to_string(local).c_str(), 1);
      ::setenv("LOOM_LOCAL_WORLD_SIZE", std::to_string(a.nproc_per_node).c_str(), 1);
      ::setenv("LOOM_MASTER_ADDR", a.master_addr.c_str(), 1);
      ::setenv("LOOM_MASTER_PORT", std::to_string(port).c_str(), 1);
      if (listen_fd >= 0 && rank == 0) {
        const int inherited = ::dup(listen_fd);  // the copy loses close-on-exec: rank 0 keeps it
        ::setenv("LOOM_MASTER_LISTEN_FD", std::to_string(inherited).c_str(), 1);
      } else {
        ::unsetenv("LOOM_MASTER_LISTEN_FD");  // not one from an enclosing launch either
      }
      std::vector<char*> argv;
      for (const std::string& s : a.command) argv.push_back(const_cast<char*>(s.c_str()));
      argv.push_back(nullptr);
      ::execvp(argv[0], argv.data());
      std::fprintf(stderr, "loom launch: cannot run %s: %s\n", argv[0], std::strerror(errno));
      std::_Exit(127);
    }
    ::setpgid(pid, pid);
    pids.push_back(pid);
  }
  if (listen_fd >= 0) ::close(listen_fd);  // rank 0 has its own copy

  // Wait for all; the first failure terminates the rest.
  int first_failure = 0;
  size_t running = pids.size();
  auto kill_all = [&](int sig) {
    for (pid_t p : pids)
      if (p > 0) ::kill(-p, sig);
  };
  std::chrono::steady_clock::time_point term_sent{};
  bool terminating = false;
  while (running > 0) {
    int status = 0;
    pid_t done = ::waitpid(-1, &status, WNOHANG);
    if (done > 0) {
      for (size_t i = 0; i < pids.size(); ++i) {
        if (pids[i] != done) continue;
        pids[i] = -1;
        --running;
        int rank = a.node_rank * a.nproc_per_node + int(i);
        if (exit_code(status) != 0 && !terminating) {
          std::cerr << "loom launch: rank " << rank << " failed (" << describe(status)
                    << "); stopping the other " << running << " rank(s)\n";
          first_failure = exit_code(status);
          terminating = true;
          term_sent = std::chrono::steady_clock::now();
          kill_all(SIGTERM);
        }
      }
      continue;
    }
    if (done < 0 && errno == ECHILD) break;
    if (terminating && std::chrono::steady_clock::now() - term_sent >
                           std::chrono::duration<double>(a.grace_seconds))
      kill_all(SIGKILL);
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return first_failure;
}

}  // namespace loom::apps
