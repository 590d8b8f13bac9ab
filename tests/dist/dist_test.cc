// loom::dist in one process: the launcher environment, sharding, a world of one (every
// collective the identity), BatchNorm's "batch" axis registered by init, and loom's TCP store
// and its CPU collectives between two "ranks" in two threads over loopback. The multi-process
// tests (mpirun, loom launch) are tests/dist/dp_train_main.cc, registered by
// cmake/dist_tests.cmake.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <map>
#include <thread>
#include <utility>

#include "core/grad.h"
#include "core/ops/elementwise.h"
#include "core/ops/reduce.h"
#include "modules/layers/normalization.h"
#include "train/dist/dist.h"
#include "tests/support/testing.h"
#include "train/dist/tcp_store.h"

namespace loom {
namespace {

template <typename F>
std::string error_text(F f) {
  try {
    f();
  } catch (const dist::DistError& e) {
    return e.what();
  }
  return "(no DistError)";
}

dist::GetEnv env(std::map<std::string, std::string> vars) {
  auto holder = std::make_shared<std::map<std::string, std::string>>(std::move(vars));
  return [holder](const char* name) -> const char* {
    auto it = holder->find(name);
    return it == holder->end() ? nullptr : it->second.c_str();
  };
}

TEST(DistLaunch, ReadsEachLauncher) {
  dist::LaunchInfo none = dist::detect_launch(env({}));
  EXPECT_EQ(none.launcher, "none");
  EXPECT_EQ(none.world_size, 1);
  EXPECT_EQ(none.rank, 0);

  dist::LaunchInfo ompi = dist::detect_launch(env({{"OMPI_COMM_WORLD_RANK", "3"},
                                                   {"OMPI_COMM_WORLD_SIZE", "4"},
                                                   {"OMPI_COMM_WORLD_LOCAL_RANK", "1"},
                                                   {"OMPI_COMM_WORLD_LOCAL_SIZE", "2"}}));
  EXPECT_EQ(ompi.launcher, "mpirun");
  EXPECT_EQ(ompi.rank, 3);
  EXPECT_EQ(ompi.world_size, 4);
  EXPECT_EQ(ompi.local_rank, 1);
  EXPECT_EQ(ompi.local_world_size, 2);

  dist::LaunchInfo slurm = dist::detect_launch(env({{"SLURM_PROCID", "5"},
                                                    {"SLURM_NTASKS", "8"},
                                                    {"SLURM_LOCALID", "1"},
                                                    {"SLURM_NTASKS_PER_NODE", "4(x2)"}}));
  EXPECT_EQ(slurm.launcher, "slurm");
  EXPECT_EQ(slurm.rank, 5);
  EXPECT_EQ(slurm.local_rank, 1);
  EXPECT_EQ(slurm.local_world_size, 8);  // "4(x2)" is not a plain count: kept as the world

  // loom's launcher wins over an enclosing SLURM allocation.
  dist::LaunchInfo loom = dist::detect_launch(
      env({{"LOOM_RANK", "1"}, {"LOOM_WORLD_SIZE", "2"}, {"LOOM_LOCAL_RANK", "1"},
           {"LOOM_MASTER_ADDR", "10.0.0.7"}, {"LOOM_MASTER_PORT", "29600"},
           {"LOOM_MASTER_LISTEN_FD", "5"}, {"SLURM_PROCID", "0"}, {"SLURM_NTASKS", "1"}}));
  EXPECT_EQ(loom.launcher, "loom");
  EXPECT_EQ(loom.rank, 1);
  EXPECT_EQ(loom.world_size, 2);
  EXPECT_EQ(loom.master_addr, "10.0.0.7");
  EXPECT_EQ(loom.master_port, 29600);
  EXPECT_EQ(loom.master_listen_fd, 5);
  EXPECT_EQ(dist::detect_launch(env({{"LOOM_RANK", "0"}, {"LOOM_WORLD_SIZE", "2"}})).master_listen_fd,
            -1);
}

TEST(DistLaunch, MalformedEnvironmentNamesTheVariable) {
  std::string e = error_text([] { dist::detect_launch(env({{"LOOM_RANK", "x1"}, {"LOOM_WORLD_SIZE", "2"}})); });
  EXPECT_NE(e.find("LOOM_RANK=\"x1\""), std::string::npos) << e;
  e = error_text([] { dist::detect_launch(env({{"LOOM_RANK", "2"}, {"LOOM_WORLD_SIZE", "2"}})); });
  EXPECT_NE(e.find("outside the world of LOOM_WORLD_SIZE=2"), std::string::npos) << e;
  e = error_text([] { dist::detect_launch(env({{"SLURM_PROCID", "0"}})); });
  EXPECT_NE(e.find("SLURM_NTASKS is not"), std::string::npos) << e;
  EXPECT_EQ(dist::timeout_from_env(env({})), 300);
  EXPECT_EQ(dist::timeout_from_env(env({{"LOOM_DIST_TIMEOUT", "2.5"}})), 2.5);
  e = error_text([] { dist::timeout_from_env(env({{"LOOM_DIST_TIMEOUT", "-1"}})); });
  EXPECT_NE(e.find("LOOM_DIST_TIMEOUT"), std::string::npos) << e;
}

TEST(DistShard, CoversTheDataOnceAndBalances) {
  for (int64_t n : {0, 1, 7, 8, 10, 1001})
    for (int w : {1, 2, 3, 4}) {
      int64_t next = 0, smallest = n, largest = 0;
      for (int r = 0; r < w; ++r) {
        dist::Shard s = dist::shard(n, r, w);
        EXPECT_EQ(s.begin, next);
        next = s.end;
        smallest = std::min(smallest, s.size());
        largest = std::max(largest, s.size());
      }
      EXPECT_EQ(next, n);
      EXPECT_LE(largest - smallest, 1);
      for (int r = 0; r < w; ++r) EXPECT_EQ(dist::shard(n, r, w, true).size(), n / w);
    }
  EXPECT_EQ(dist::shard(10, 1, 4).begin, 3);
  EXPECT_THROW(dist::shard(10, 4, 4), ValueError);
}

TEST(DistWorldOfOne, CollectivesAreTheIdentity) {
  dist::init({.launch = dist::LaunchInfo{}});
  EXPECT_TRUE(dist::initialized());
  EXPECT_EQ(dist::world_size(), 1);
  EXPECT_TRUE(dist::is_main());
  EXPECT_EQ(dist::communicator().backend(), "local");
  Tensor x = from_vector<float>({1, 2, 3, 4}, {2, 2});
  // No copy: the same storage comes back.
  EXPECT_EQ(dist::all_reduce(x).storage(), x.storage());
  EXPECT_EQ(dist::pmean(x).storage(), x.storage());
  EXPECT_EQ(dist::broadcast(x, 0).storage(), x.storage());
  EXPECT_EQ(dist::all_gather(x).shape(), Shape({1, 2, 2}));
  EXPECT_EQ(dist::reduce_scatter(x).shape(), Shape({2, 2}));
  dist::barrier();
  Tree t;
  t.set("a/w", x);
  EXPECT_TRUE(tree_allclose(dist::pmean(t), t, 0, 0));
  EXPECT_TRUE(tree_allclose(dist::psum(t), t, 0, 0));
  // Errors name the op, dtype and shape.
  Tensor u8 = zeros({3}, DType::U8);
  try {
    dist::all_reduce(u8);
    ADD_FAILURE() << "no error";
  } catch (const DTypeError& e) {
    EXPECT_NE(std::string(e.what()).find("dist::all_reduce: unsupported dtype uint8"), std::string::npos) << e.what();
  }
  EXPECT_THROW(dist::broadcast(x, 1), dist::DistError);
  EXPECT_THROW(dist::all_reduce(zeros({2}, DType::I32), dist::ReduceOp::Mean), DTypeError);

  // init registered "batch" for BatchNorm: in a world of one it changes nothing.
  Tensor in = from_vector<float>({1, 2, 3, 5, 8, 13}, {3, 2});
  Tree vars = nn::BatchNorm{}.init(random::key(0), in);
  auto [y_sync, u1] = nn::BatchNorm{.axis_name = "batch"}.apply_mutable(vars, {"batch_stats"}, in);
  auto [y_plain, u2] = nn::BatchNorm{}.apply_mutable(vars, {"batch_stats"}, in);
  EXPECT_TRUE(tree_allclose(Tree(y_sync), Tree(y_plain), 1e-6, 1e-6));  // composed vs fused path
  dist::finalize();
  EXPECT_FALSE(dist::initialized());
  nn::set_axis_reducer("batch", {});
}

// Two ranks in two threads: rank 0 serves the store on a free loopback port.
TEST(DistTcpStore, SetGetAndCollectivesBetweenTwoRanks) {
  dist::set_timeout(10);
  auto store0 = std::make_shared<dist::TcpStore>("127.0.0.1", 0, 0, 2);
  auto store1 = std::make_shared<dist::TcpStore>("127.0.0.1", store0->port(), 1, 2);
  std::vector<float> result[2], gathered[2], scattered[2];
  std::vector<uint8_t> id[2];
  auto run = [&](std::shared_ptr<dist::TcpStore> store) {
    int r = store->rank();
    std::unique_ptr<dist::Communicator> c = dist::make_store_communicator(store);
    std::vector<float> v = {float(r + 1), 10.f * float(r + 1), 0.5f};
    c->all_reduce(v.data(), v.size(), DType::F32, dist::ReduceOp::Mean);
    result[r] = v;
    std::vector<float> g(6);
    c->all_gather(v.data(), g.data(), 3, DType::F32);
    gathered[r] = g;
    std::vector<float> big = {1, 2, 3, 4}, mine(2);
    for (float& b : big) b *= float(r + 1);
    c->reduce_scatter(big.data(), mine.data(), 2, DType::F32, dist::ReduceOp::Sum);
    scattered[r] = mine;
    c->barrier();
    std::vector<uint8_t> bytes(128, uint8_t(r == 0 ? 42 : 0));
    store->broadcast_bytes("id", bytes.data(), bytes.size(), r == 0);
    id[r] = bytes;
  };
  std::thread t0(run, store0), t1(run, store1);
  t0.join();
  t1.join();
  for (int r = 0; r < 2; ++r) {
    EXPECT_EQ(result[r], (std::vector<float>{1.5f, 15.f, 0.5f}));
    EXPECT_EQ(gathered[r], (std::vector<float>{1.5f, 15.f, 0.5f, 1.5f, 15.f, 0.5f}));
    EXPECT_EQ(id[r], std::vector<uint8_t>(128, 42));
  }
  EXPECT_EQ(scattered[0], (std::vector<float>{3, 6}));
  EXPECT_EQ(scattered[1], (std::vector<float>{9, 12}));
}

// A socket listening on a free loopback port, as loom's launcher makes for rank 0.
std::pair<int, int> listening_socket() {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  EXPECT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  EXPECT_EQ(::listen(fd, 16), 0);
  EXPECT_EQ(::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len), 0);
  return {fd, int(ntohs(addr.sin_port))};
}

// Rank 0 serves on the launcher's socket (LOOM_MASTER_LISTEN_FD) instead of binding the port.
TEST(DistTcpStore, RankZeroServesOnTheLaunchersListeningSocket) {
  dist::set_timeout(10);
  auto [fd, port] = listening_socket();
  // Rank 1 first: the socket already listens, so it connects before rank 0's store exists.
  auto store1 = std::make_shared<dist::TcpStore>("127.0.0.1", port, 1, 2);
  auto store0 = std::make_shared<dist::TcpStore>("127.0.0.1", port, 0, 2, fd);
  EXPECT_EQ(store0->port(), port);
  std::thread t([&] { store1->set("k", {1, 2, 3}); });
  EXPECT_EQ(store0->get("k"), (std::vector<uint8_t>{1, 2, 3}));
  t.join();
  store1.reset();  // rank 0's store waits for the other ranks to hang up
  store0.reset();
  dist::set_timeout(300);
}

TEST(DistTcpStore, AHandedDownSocketThatDoesNotListenOrListensElsewhereIsRefused) {
  const int plain = ::socket(AF_INET, SOCK_STREAM, 0);
  std::string e = error_text([&] { dist::TcpStore s("127.0.0.1", 0, 0, 1, plain); });
  EXPECT_NE(e.find("LOOM_MASTER_LISTEN_FD=" + std::to_string(plain) + " is not a listening socket"),
            std::string::npos)
      << e;
  ::close(plain);
  auto [fd, port] = listening_socket();
  const int other = port == 65535 ? port - 1 : port + 1;
  e = error_text([&, fd = fd] { dist::TcpStore s("127.0.0.1", other, 0, 1, fd); });
  EXPECT_NE(e.find("listens on port " + std::to_string(port) + ", not LOOM_MASTER_PORT=" +
                   std::to_string(other)),
            std::string::npos)
      << e;
  ::close(fd);
}

TEST(DistTcpStore, AMissingPeerTimesOutWithAClearError) {
  dist::set_timeout(0.3);
  auto store0 = std::make_shared<dist::TcpStore>("127.0.0.1", 0, 0, 2);
  auto c = dist::make_store_communicator(store0);
  float v = 1;
  std::string e = error_text([&] { c->all_reduce(&v, 1, DType::F32, dist::ReduceOp::Sum); });
  EXPECT_NE(e.find("rank 0 of 2"), std::string::npos) << e;
  EXPECT_NE(e.find("a peer rank died or hangs"), std::string::npos) << e;
  // Connecting to a store nobody serves fails within the timeout too.
  e = error_text([] { dist::TcpStore s("127.0.0.1", 1, 1, 2); });
  EXPECT_NE(e.find("could not reach rank 0"), std::string::npos) << e;
  dist::set_timeout(300);
}

}  // namespace
}  // namespace loom

namespace loom {
namespace {

// A world of one: pmean_weighted is the identity (any weight); wrong dtypes and negative
// weights name the function.
TEST(DistWorldOfOne, PmeanWeighted) {
  Tensor x = from_vector<float>({1.f, 2.f, 3.f}, {3});
  EXPECT_ALLCLOSE(dist::pmean_weighted(x, 5.0), x, 0, 0);
  EXPECT_THROW(dist::pmean_weighted(x, -1.0), ValueError);
  try {
    dist::pmean_weighted(from_vector<int32_t>({1, 2}, {2}), 1.0);
    FAIL() << "no DTypeError";
  } catch (const DTypeError& e) {
    EXPECT_NE(std::string(e.what()).find("pmean_weighted"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("[2]"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace loom
