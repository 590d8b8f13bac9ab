// loom's TCP store: rendezvous for `loom launch` without MPI. Rank 0 serves a key-value store on
// master_addr:master_port; every rank (rank 0 too) is a client. Values are byte strings; get()
// blocks until the key is set, at most dist::timeout() (then DistError). A value set with
// `reads = n` is dropped after its n-th get, so collectives do not accumulate memory.
//
// It carries the NCCL unique id and, through make_store_communicator, CPU collectives (each rank
// posts its buffer, every rank reads all of them and reduces in rank order, so every rank gets
// bitwise the same result). That is O(world^2) traffic: meant for small CPU worlds and tests; MPI
// or NCCL carry real traffic.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "train/dist/communicator.h"

namespace loom::dist {

class TcpStore {
 public:
  /// Rank 0 listens first (port 0 picks a free port: see port()); every rank then connects,
  /// retrying until dist::timeout(). Rank 0 given `listen_fd` (a socket already listening,
  /// from loom's launcher) serves on it instead of binding master_port, and owns it; its port
  /// must be master_port unless that is 0.
  TcpStore(const std::string& master_addr, int master_port, int rank, int world_size,
           int listen_fd = -1);
  ~TcpStore();
  TcpStore(const TcpStore&) = delete;
  TcpStore& operator=(const TcpStore&) = delete;

  void set(const std::string& key, const std::vector<uint8_t>& value, uint32_t reads = 0);
  std::vector<uint8_t> get(const std::string& key);
  /// Root's `bytes` bytes at `buf` reach every rank's buf (each rank calls it once per key).
  void broadcast_bytes(const std::string& key, void* buf, size_t bytes, bool is_root);
  int rank() const { return rank_; }
  int world_size() const { return world_; }
  int port() const { return port_; }

 private:
  struct Server;
  void request(const std::vector<uint8_t>& message);
  int rank_, world_, port_;
  int fd_ = -1;
  std::unique_ptr<Server> server_;
};

std::unique_ptr<Communicator> make_store_communicator(std::shared_ptr<TcpStore> store);

/// A close-on-exec socket listening on every interface at `port` (0: a free one): rank 0's
/// store, or loom's launcher holding a free port for it. DistError naming the port on failure.
int listen_on_port(int port);

/// The port the socket `fd` is bound to.
int socket_port(int fd);

}  // namespace loom::dist
