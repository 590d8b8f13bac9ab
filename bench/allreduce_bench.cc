// loom_allreduce_bench: all-reduce bus bandwidth of loom::dist against message size and against
// the gradient bucket size, with nccl-tests' definitions (docs/PERFORMANCE.md in nccl-tests):
//   algbw = bytes / time,   busbw = algbw * 2 (n - 1) / n   (n ranks; 0 for one rank)
// busbw is comparable across world sizes and against the link's peak bandwidth.
//
//   mpirun -n 2 loom_allreduce_bench                        (CPU tensors over MPI)
//   loom launch -n 8 -- loom_allreduce_bench --device cuda  (one GPU per rank over NCCL)
//   loom_allreduce_bench --device cuda                      (one GPU: a world-of-one NCCL)
// Options: --min-bytes B (8) --max-bytes B (256M) --factor F (2) --iters N (20) --warmup N (2)
//          --tree-bytes B (64M, the bucket sweep's gradient tree) --leaf-bytes B (1M)
//          --buckets B,B,.. (256K,1M,4M,16M,25M,64M); sizes accept K/M/G suffixes.
// Times go through dist::all_reduce / dist::psum(tree), i.e. what a training step pays, including
// loom's copy of the input (collectives return new tensors) and, for trees, packing the leaves
// into buckets. Each size is timed as the slowest rank's mean over `iters` calls (fewer for big
// messages: about 1 GB moved per size at most) and checked: #wrong counts elements that are not
// world_size (every rank sends ones), as nccl-tests does.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "core/ops/elementwise.h"
#include "core/ops/reduce.h"
#include "core/tensor.h"
#include "train/dist/dist.h"
#include "train/dist/nccl_communicator.h"
#if LOOM_CUDA
#include "kernels/cuda/runtime.h"
#endif

namespace loom {
namespace {

struct Options {
  std::string device = "cpu";
  size_t min_bytes = 8, max_bytes = size_t(256) << 20, factor = 2;
  int iters = 20, warmup = 2;
  size_t tree_bytes = size_t(64) << 20, leaf_bytes = size_t(1) << 20;
  std::vector<size_t> buckets = {size_t(256) << 10, size_t(1) << 20, size_t(4) << 20,
                                 size_t(16) << 20, size_t(25) << 20, size_t(64) << 20};
};

size_t parse_bytes(const std::string& s) {
  char* end = nullptr;
  double v = std::strtod(s.c_str(), &end);
  std::string unit = end ? std::string(end) : "";
  double mult = 1;
  if (unit == "K" || unit == "k") mult = 1 << 10;
  else if (unit == "M" || unit == "m") mult = 1 << 20;
  else if (unit == "G" || unit == "g") mult = double(1 << 30);
  else if (!unit.empty()) throw std::invalid_argument("bad size: " + s);
  return size_t(v * mult);
}

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) throw std::invalid_argument(a + " needs a value");
      return argv[++i];
    };
    if (a == "--device") o.device = next();
    else if (a == "--min-bytes") o.min_bytes = parse_bytes(next());
    else if (a == "--max-bytes") o.max_bytes = parse_bytes(next());
    else if (a == "--factor") o.factor = size_t(std::stoul(next()));
    else if (a == "--iters") o.iters = std::stoi(next());
    else if (a == "--warmup") o.warmup = std::stoi(next());
    else if (a == "--tree-bytes") o.tree_bytes = parse_bytes(next());
    else if (a == "--leaf-bytes") o.leaf_bytes = parse_bytes(next());
    else if (a == "--buckets") {
      o.buckets.clear();
      std::string list = next();
      size_t pos = 0;
      while (pos <= list.size()) {
        size_t comma = list.find(',', pos);
        if (comma == std::string::npos) comma = list.size();
        if (comma > pos) o.buckets.push_back(parse_bytes(list.substr(pos, comma - pos)));
        pos = comma + 1;
      }
    } else {
      throw std::invalid_argument("unknown option " + a);
    }
  }
  if (o.device != "cpu" && o.device != "cuda") throw std::invalid_argument("--device cpu|cuda");
  if (o.factor < 2 || o.min_bytes < 4 || o.iters < 1 || o.leaf_bytes < 4)
    throw std::invalid_argument("need --factor >= 2, --min-bytes >= 4, --iters >= 1");
  return o;
}

void sync(Device d) {
  if (d.is_cuda()) LOOM_CUDA_ONLY(cuda::synchronize(d.index));
}

/// The slowest rank's seconds per call of f (after warmup), all ranks starting together.
template <typename F>
double time_per_call(F f, int iters, int warmup, Device d) {
  for (int i = 0; i < warmup; ++i) f();
  sync(d);
  dist::barrier();
  auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < iters; ++i) f();
  sync(d);
  double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() / iters;
  Tensor all = dist::all_gather(full({1}, s, DType::F64));
  return max(all).item<double>();
}

int64_t count_wrong(const Tensor& got, double want) {
  return sum(not_equal(got.to(Device::cpu()).to(DType::F64), full({}, want, DType::F64))
                 .to(DType::I64))
      .item<int64_t>();
}

int iters_for(size_t bytes, int iters) {
  // About 1 GB per size at most, so the largest messages stay quick on slow transports.
  return int(std::clamp<size_t>((size_t(1) << 30) / std::max<size_t>(bytes, 1), 1, size_t(iters)));
}

int run(const Options& o) {
  const int w = dist::world_size();
  Device d = o.device == "cuda" ? Device::cuda(dist::local_rank()) : Device::cpu();
  if (d.is_cuda() && w == 1) {
    // One GPU: a world-of-one NCCL communicator, so the numbers are NCCL's (busbw is 0 by
    // definition, the time is NCCL's launch + copy latency).
    dist::set_gpu_communicator(dist::make_nccl_communicator(0, 1, d.index, [](void*, size_t) {}),
                               d.index);
  }
  const double bus = w > 1 ? 2.0 * (w - 1) / w : 0.0;
  const bool main = dist::is_main();
  if (main) {
    std::printf("# loom all-reduce (sum, float32) over %s: %d rank(s), device %s\n",
                dist::communicator(d).backend().c_str(), w, d.str().c_str());
    std::printf("# busbw = algbw * 2(n-1)/n (nccl-tests); time = slowest rank, mean per call\n");
    std::printf("%12s %12s %6s %12s %10s %10s %8s\n", "size(B)", "count", "iters", "time(us)",
                "algbw", "busbw", "#wrong");
    std::printf("%12s %12s %6s %12s %10s %10s %8s\n", "", "(elements)", "", "", "(GB/s)",
                "(GB/s)", "");
  }
  int64_t total_wrong = 0;
  for (size_t bytes = o.min_bytes; bytes <= o.max_bytes; bytes *= o.factor) {
    const int64_t n = int64_t(bytes / 4);
    Tensor x = full({n}, 1.0, DType::F32, d);
    Tensor out;
    int iters = iters_for(bytes, o.iters);
    double t = time_per_call([&] { out = dist::all_reduce(x, dist::ReduceOp::Sum); }, iters,
                             std::min(o.warmup, iters), d);
    int64_t wrong = count_wrong(out, double(w));
    total_wrong += wrong;
    double algbw = double(n * 4) / t / 1e9;
    if (main)
      std::printf("%12zu %12lld %6d %12.1f %10.3f %10.3f %8lld\n", size_t(n * 4), (long long)n,
                  iters, t * 1e6, algbw, algbw * bus, (long long)wrong);
  }

  // Bucket sweep: a gradient tree of equal leaves reduced with dist::psum at each bucket size.
  const int64_t leaf_n = int64_t(o.leaf_bytes / 4);
  const int64_t leaves = std::max<int64_t>(1, int64_t(o.tree_bytes / o.leaf_bytes));
  Tree tree;
  for (int64_t i = 0; i < leaves; ++i)
    tree.set("layer" + std::to_string(i) + "/kernel", full({leaf_n}, 1.0, DType::F32, d));
  const double tree_bytes = double(leaves * leaf_n * 4);
  if (main) {
    std::printf("\n# psum of a %lld-leaf tree (%.1f MB, %.2f MB per leaf) against bucket size\n",
                (long long)leaves, tree_bytes / 1e6, double(leaf_n * 4) / 1e6);
    std::printf("%12s %8s %6s %12s %10s %10s %8s\n", "bucket(B)", "buckets", "iters", "time(us)",
                "algbw", "busbw", "#wrong");
  }
  const size_t saved = dist::bucket_bytes();
  for (size_t bucket : o.buckets) {
    dist::set_bucket_bytes(bucket);
    Tree out;
    int iters = iters_for(size_t(tree_bytes), o.iters);
    double t = time_per_call([&] { out = dist::psum(tree); }, iters, std::min(o.warmup, iters), d);
    int64_t wrong = 0;
    for (const Tensor& leaf : out.leaves()) wrong += count_wrong(leaf, double(w));
    total_wrong += wrong;
    // Buckets as dist packs them: whole leaves, at least one per bucket.
    int64_t per = std::max<int64_t>(1, int64_t(bucket / size_t(leaf_n * 4)));
    double algbw = tree_bytes / t / 1e9;
    if (main)
      std::printf("%12zu %8lld %6d %12.1f %10.3f %10.3f %8lld\n", bucket,
                  (long long)((leaves + per - 1) / per), iters, t * 1e6, algbw, algbw * bus,
                  (long long)wrong);
  }
  dist::set_bucket_bytes(saved);
  if (main) std::printf("# total #wrong: %lld\n", (long long)total_wrong);
  return total_wrong == 0 ? 0 : 1;
}

}  // namespace
}  // namespace loom

int main(int argc, char** argv) {
  using namespace loom;
  int rc = 0;
  try {
    Options o = parse(argc, argv);
    dist::init();
    rc = run(o);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "loom_allreduce_bench (rank %d): error: %s\n", dist::rank(), e.what());
    return 1;
  }
  dist::finalize();
  return rc;
}
