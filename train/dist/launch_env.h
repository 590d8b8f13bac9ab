// Where this process sits in a data-parallel world, as its launcher describes it in the
// environment: loom's own launcher (LOOM_RANK, LOOM_WORLD_SIZE, LOOM_LOCAL_RANK,
// LOOM_LOCAL_WORLD_SIZE, LOOM_MASTER_ADDR, LOOM_MASTER_PORT, LOOM_MASTER_LISTEN_FD), OpenMPI's mpirun
// (OMPI_COMM_WORLD_RANK / _SIZE / _LOCAL_RANK / _LOCAL_SIZE), or SLURM (SLURM_PROCID,
// SLURM_NTASKS, SLURM_LOCALID). Checked in that order; none of them means a world of one.
#pragma once
#include <functional>
#include <string>

namespace loom::dist {

struct LaunchInfo {
  std::string launcher = "none";  // "loom", "mpirun", "slurm", "none"
  int rank = 0;
  int world_size = 1;
  int local_rank = 0;
  int local_world_size = 1;
  std::string master_addr = "127.0.0.1";  // rank 0's TCP store (loom's launcher)
  int master_port = 29500;
  // Rank 0 only: a socket the launcher already listens on at master_port, handed down open, so
  // that no other process can take the port between the launcher choosing it and rank 0's
  // store (-1: rank 0 binds master_port itself).
  int master_listen_fd = -1;
};

using GetEnv = std::function<const char*(const char*)>;

/// Reads the launcher's variables through `getenv` (std::getenv by default). Throws DistError
/// naming the variable when one is malformed (not an integer, rank outside [0, world size)).
LaunchInfo detect_launch(const GetEnv& getenv = {});

/// The collective timeout in seconds: LOOM_DIST_TIMEOUT when set (> 0), else 300.
double timeout_from_env(const GetEnv& getenv = {});

}  // namespace loom::dist
