#include "train/dist/tcp_store.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <map>
#include <set>
#include <mutex>
#include <thread>

namespace loom::dist {
namespace {

using clock = std::chrono::steady_clock;
enum : uint8_t { kSet = 1, kGet = 2 };

clock::time_point deadline_after(double seconds) {
  return clock::now() + std::chrono::duration_cast<clock::duration>(
                            std::chrono::duration<double>(seconds));
}

[[noreturn]] void sys_fail(const std::string& what) {
  LOOM_THROW(dist::DistError, "dist (tcp store): ", what, ": ", std::strerror(errno));
}

/// The launcher's listening socket (LOOM_MASTER_LISTEN_FD), checked to be one, at `port` unless
/// that is 0; not passed on to processes rank 0 starts.
int adopt_listener(int fd, int port) {
  int listening = 0;
  socklen_t len = sizeof listening;
  LOOM_CHECK(::getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) == 0 && listening,
             dist::DistError, "dist (tcp store): LOOM_MASTER_LISTEN_FD=", fd,
             " is not a listening socket of this process");
  const int bound = socket_port(fd);
  LOOM_CHECK(port == 0 || bound == port, dist::DistError, "dist (tcp store): LOOM_MASTER_LISTEN_FD=",
             fd, " listens on port ", bound, ", not LOOM_MASTER_PORT=", port);
  ::fcntl(fd, F_SETFD, FD_CLOEXEC);
  return fd;
}

/// Sends all of `n` bytes; false when the peer is gone.
bool send_all(int fd, const void* data, size_t n) {
  const char* p = static_cast<const char*>(data);
  while (n > 0) {
    ssize_t k = ::send(fd, p, n, MSG_NOSIGNAL);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) return false;
    p += k;
    n -= size_t(k);
  }
  return true;
}

/// Receives exactly `n` bytes before `deadline` (none: wait forever). Returns 1 on success, 0
/// when the peer closed, -1 on timeout.
int recv_all(int fd, void* data, size_t n, const clock::time_point* deadline) {
  char* p = static_cast<char*>(data);
  while (n > 0) {
    if (deadline) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(*deadline - clock::now());
      if (left.count() <= 0) return -1;
      pollfd pfd{fd, POLLIN, 0};
      int r = ::poll(&pfd, 1, int(std::min<int64_t>(left.count(), 1000)));
      if (r < 0 && errno != EINTR) return 0;
      if (r <= 0) continue;
    }
    ssize_t k = ::recv(fd, p, n, 0);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) return 0;
    p += k;
    n -= size_t(k);
  }
  return 1;
}

void put_u32(std::vector<uint8_t>& m, uint32_t v) {
  for (int i = 0; i < 4; ++i) m.push_back(uint8_t(v >> (8 * i)));
}
void put_u64(std::vector<uint8_t>& m, uint64_t v) {
  for (int i = 0; i < 8; ++i) m.push_back(uint8_t(v >> (8 * i)));
}
uint64_t get_le(const uint8_t* p, int n) {
  uint64_t v = 0;
  for (int i = 0; i < n; ++i) v |= uint64_t(p[i]) << (8 * i);
  return v;
}

}  // namespace

struct TcpStore::Server {
  struct Entry {
    std::vector<uint8_t> value;
    uint32_t reads_left = 0;  // 0: kept
  };
  int listen_fd = -1;
  std::mutex mutex;
  std::condition_variable changed;
  std::map<std::string, Entry> data;
  bool stopping = false;
  std::vector<std::thread> threads;
  std::vector<int> clients;
  std::thread acceptor;
  int live = 0;                      // connections being served
  std::multiset<std::string> waiting;  // keys that GETs wait for

  /// True when no connection can make progress: each is gone or waits for a key nobody set.
  bool idle() const {
    int stuck = 0;
    for (const std::string& k : waiting) stuck += data.count(k) == 0;
    return live == stuck;
  }

  void serve(int fd) {
    serve_requests(fd);
    std::lock_guard<std::mutex> lock(mutex);
    --live;
    changed.notify_all();
  }

  void serve_requests(int fd) {
    for (;;) {
      uint8_t head[5];
      if (recv_all(fd, head, 5, nullptr) != 1) return;
      std::string key(size_t(get_le(head + 1, 4)), '\0');
      if (recv_all(fd, key.data(), key.size(), nullptr) != 1) return;
      if (head[0] == kSet) {
        uint8_t meta[12];
        if (recv_all(fd, meta, 12, nullptr) != 1) return;
        Entry e;
        e.value.resize(size_t(get_le(meta, 8)));
        e.reads_left = uint32_t(get_le(meta + 8, 4));
        if (recv_all(fd, e.value.data(), e.value.size(), nullptr) != 1) return;
        {
          std::lock_guard<std::mutex> lock(mutex);
          data[key] = std::move(e);
        }
        changed.notify_all();
        uint8_t ack = 1;
        if (!send_all(fd, &ack, 1)) return;
      } else {
        std::vector<uint8_t> value;
        {
          std::unique_lock<std::mutex> lock(mutex);
          auto it = waiting.insert(key);
          changed.wait(lock, [&] { return stopping || data.count(key) > 0; });
          waiting.erase(it);
          if (stopping) return;
          Entry& e = data[key];
          value = e.value;
          if (e.reads_left > 0 && --e.reads_left == 0) data.erase(key);
        }
        // One send: a small header sent on its own would wait for the peer's delayed ACK
        // (Nagle), about 40 ms per get.
        std::vector<uint8_t> reply;
        reply.reserve(8 + value.size());
        put_u64(reply, value.size());
        reply.insert(reply.end(), value.begin(), value.end());
        if (!send_all(fd, reply.data(), reply.size())) return;
      }
    }
  }
};

int socket_port(int fd) {
  sockaddr_in addr{};
  socklen_t len = sizeof addr;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) sys_fail("getsockname");
  return ntohs(addr.sin_port);
}

int listen_on_port(int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) sys_fail("socket");
  int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_ANY);
  addr.sin_port = htons(uint16_t(port));
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || ::listen(fd, 128) != 0) {
    const int err = errno;
    ::close(fd);
    errno = err;
    sys_fail(detail::cat("cannot listen on port ", port));
  }
  return fd;
}

TcpStore::TcpStore(const std::string& master_addr, int master_port, int rank, int world_size,
                   int listen_fd)
    : rank_(rank), world_(world_size), port_(master_port) {
  if (rank == 0) {
    server_ = std::make_unique<Server>();
    const int fd =
        listen_fd >= 0 ? adopt_listener(listen_fd, master_port) : listen_on_port(master_port);
    port_ = socket_port(fd);
    server_->listen_fd = fd;
    Server* s = server_.get();
    s->acceptor = std::thread([s] {
      for (;;) {
        int c = ::accept(s->listen_fd, nullptr, nullptr);
        if (c < 0) return;  // closed by the destructor
        std::lock_guard<std::mutex> lock(s->mutex);
        if (s->stopping) {
          ::close(c);
          return;
        }
        int one = 1;  // answers are small and awaited: no Nagle delay
        ::setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        s->clients.push_back(c);
        ++s->live;
        s->threads.emplace_back([s, c] { s->serve(c); });
      }
    });
  }
  // Connect, retrying while rank 0 starts.
  addrinfo hints{}, *res = nullptr;
  hints.ai_family = AF_INET;
  hints.ai_socktype = SOCK_STREAM;
  std::string port = std::to_string(port_);
  LOOM_CHECK(::getaddrinfo(master_addr.c_str(), port.c_str(), &hints, &res) == 0 && res, dist::DistError,
             "dist (tcp store): cannot resolve LOOM_MASTER_ADDR=", master_addr);
  auto deadline = deadline_after(timeout());
  for (;;) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    if (fd_ >= 0 && ::connect(fd_, res->ai_addr, res->ai_addrlen) == 0) break;
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
    if (clock::now() > deadline) {
      ::freeaddrinfo(res);
      LOOM_THROW(dist::DistError, "dist (tcp store): rank ", rank, " could not reach rank 0 at ",
                 master_addr, ":", port_, " within ", timeout(), " s (LOOM_DIST_TIMEOUT)");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ::freeaddrinfo(res);
  int one = 1;
  ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

TcpStore::~TcpStore() {
  if (fd_ >= 0) ::close(fd_);
  if (!server_) return;
  {
    // Rank 0 often finishes first: let the other ranks read their last answers and hang up
    // before the store goes away (at most the timeout, for a peer that hangs).
    std::unique_lock<std::mutex> lock(server_->mutex);
    server_->changed.wait_for(lock, std::chrono::duration<double>(timeout()),
                              [&] { return server_->idle(); });
    server_->stopping = true;
    for (int c : server_->clients) ::shutdown(c, SHUT_RDWR);
  }
  server_->changed.notify_all();
  ::shutdown(server_->listen_fd, SHUT_RDWR);
  ::close(server_->listen_fd);
  if (server_->acceptor.joinable()) server_->acceptor.join();
  for (auto& t : server_->threads) t.join();
  for (int c : server_->clients) ::close(c);
}

void TcpStore::request(const std::vector<uint8_t>& message) {
  LOOM_CHECK(send_all(fd_, message.data(), message.size()), dist::DistError, "dist (tcp store): rank ",
             rank_, " lost its connection to rank 0 (did rank 0 die?)");
}

void TcpStore::set(const std::string& key, const std::vector<uint8_t>& value, uint32_t reads) {
  std::vector<uint8_t> m{kSet};
  put_u32(m, uint32_t(key.size()));
  m.insert(m.end(), key.begin(), key.end());
  put_u64(m, value.size());
  put_u32(m, reads);
  request(m);
  LOOM_CHECK(send_all(fd_, value.data(), value.size()), dist::DistError, "dist (tcp store): rank ",
             rank_, " lost its connection to rank 0 (did rank 0 die?)");
  uint8_t ack = 0;
  auto deadline = deadline_after(timeout());
  int r = recv_all(fd_, &ack, 1, &deadline);
  LOOM_CHECK(r == 1, dist::DistError, "dist (tcp store): set(\"", key, "\") on rank ", rank_,
             r == 0 ? ": lost the connection to rank 0 (did rank 0 die?)" : ": no answer in time");
}

std::vector<uint8_t> TcpStore::get(const std::string& key) {
  std::vector<uint8_t> m{kGet};
  put_u32(m, uint32_t(key.size()));
  m.insert(m.end(), key.begin(), key.end());
  request(m);
  auto deadline = deadline_after(timeout());
  uint8_t head[8];
  int r = recv_all(fd_, head, 8, &deadline);
  std::vector<uint8_t> value;
  if (r == 1) {
    value.resize(size_t(get_le(head, 8)));
    r = recv_all(fd_, value.data(), value.size(), &deadline);
  }
  if (r == 1) return value;
  // The request is still pending on the server: this connection is out of step for good.
  ::shutdown(fd_, SHUT_RDWR);
  LOOM_THROW(dist::DistError, "dist (tcp store): get(\"", key, "\") on rank ", rank_, " of ", world_,
             r == 0 ? ": lost the connection to rank 0 (did rank 0 die?)"
                    : detail::cat(": not set within ", timeout(),
                                  " s (LOOM_DIST_TIMEOUT): a peer rank died or hangs"));
}

void TcpStore::broadcast_bytes(const std::string& key, void* buf, size_t bytes, bool is_root) {
  if (is_root) {
    const uint8_t* p = static_cast<const uint8_t*>(buf);
    set(key, std::vector<uint8_t>(p, p + bytes), uint32_t(world_ - 1));
    return;
  }
  std::vector<uint8_t> v = get(key);
  LOOM_CHECK(v.size() == bytes, dist::DistError, "dist (tcp store): \"", key, "\" holds ", v.size(),
             " bytes, expected ", bytes);
  std::memcpy(buf, v.data(), bytes);
}

}  // namespace loom::dist
