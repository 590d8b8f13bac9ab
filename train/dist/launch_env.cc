#include "train/dist/launch_env.h"

#include <cstdlib>

#include "train/dist/communicator.h"

namespace loom::dist {
namespace {

const char* read(const GetEnv& getenv, const char* name) {
  return getenv ? getenv(name) : std::getenv(name);
}

int parse_int(const char* name, const char* text) {
  char* end = nullptr;
  long v = std::strtol(text, &end, 10);
  LOOM_CHECK(end != text && *end == '\0' && v >= 0 && v < (1L << 30), dist::DistError,
             "dist::init: environment variable ", name, "=\"", text,
             "\" is not a non-negative integer");
  return int(v);
}

/// Reads `name` when set, else keeps `value`; returns whether it was set.
bool read_int(const GetEnv& getenv, const char* name, int& value) {
  const char* text = read(getenv, name);
  if (!text || !*text) return false;
  value = parse_int(name, text);
  return true;
}

}  // namespace

LaunchInfo detect_launch(const GetEnv& getenv) {
  LaunchInfo info;
  struct Scheme {
    const char* launcher;
    const char* rank;
    const char* size;
    const char* local_rank;
    const char* local_size;
  };
  static const Scheme schemes[] = {
      {"loom", "LOOM_RANK", "LOOM_WORLD_SIZE", "LOOM_LOCAL_RANK", "LOOM_LOCAL_WORLD_SIZE"},
      {"mpirun", "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK",
       "OMPI_COMM_WORLD_LOCAL_SIZE"},
      {"slurm", "SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID", "SLURM_NTASKS_PER_NODE"},
  };
  for (const Scheme& s : schemes) {
    if (!read_int(getenv, s.rank, info.rank)) continue;
    info.launcher = s.launcher;
    LOOM_CHECK(read_int(getenv, s.size, info.world_size), dist::DistError, "dist::init: ", s.rank,
               " is set but ", s.size, " is not");
    LOOM_CHECK(info.world_size >= 1 && info.rank < info.world_size, dist::DistError, "dist::init: ",
               s.rank, "=", info.rank, " is outside the world of ", s.size, "=",
               info.world_size);
    info.local_rank = info.rank;
    read_int(getenv, s.local_rank, info.local_rank);
    info.local_world_size = info.world_size;
    // SLURM_NTASKS_PER_NODE may read "4(x2)"; only a plain number is taken.
    const char* ls = read(getenv, s.local_size);
    if (ls && *ls) {
      char* end = nullptr;
      long v = std::strtol(ls, &end, 10);
      if (end != ls && *end == '\0' && v >= 1) info.local_world_size = int(v);
    }
    break;
  }
  if (const char* addr = read(getenv, "LOOM_MASTER_ADDR"); addr && *addr) info.master_addr = addr;
  read_int(getenv, "LOOM_MASTER_PORT", info.master_port);
  read_int(getenv, "LOOM_MASTER_LISTEN_FD", info.master_listen_fd);
  return info;
}

double timeout_from_env(const GetEnv& getenv) {
  const char* text = read(getenv, "LOOM_DIST_TIMEOUT");
  if (!text || !*text) return 300;
  char* end = nullptr;
  double v = std::strtod(text, &end);
  LOOM_CHECK(end != text && *end == '\0' && v > 0, dist::DistError,
             "dist: LOOM_DIST_TIMEOUT=\"", text, "\" is not a positive number of seconds");
  return v;
}

}  // namespace loom::dist
