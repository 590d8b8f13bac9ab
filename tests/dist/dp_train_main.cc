// loom_dp_test: the multi-process data-parallel checks, run by CTest under mpirun (-n 2, -n 4)
// and `loom launch` (cmake/dist_tests.cmake). Every rank runs the same mode and exits 0 when
// all its checks pass.
//   collectives  every collective, dtype and size (8 B .. 64 MB) gives exact values (#wrong = 0)
//   ddp          N ranks on B/N examples each with grads = pmean(grads) equal one process on the
//                full batch B after 5 SGD steps (params allclose rtol 1e-5), the seed CNN
//   batchnorm    BatchNorm{.axis_name = "batch"} across ranks equals one process's BatchNorm on
//                the joint batch (outputs, gradients, params and batch_stats after 3 steps)
//   batchnorm_unequal  the same with unequal local batches (rank r holds 3 + 2r examples: 3 and 5
//                on 2 ranks): the reducer weights each rank's statistics by its local count
//   overlap      the overlapped all-reduce (dist::value_and_grad_pmean, GradientReducer) with small
//                buckets gives the plain path's gradients (bitwise on 2 ranks), mixed dtypes
//                included, and launches its first buckets before the backward pass has finished
//   zero         ZeRO-1 (dist::ShardedOptimizer): 5 adamw steps equal the unsharded DDP step
//                (params allclose rtol 1e-5) while each rank holds 1/N of the optimizer state;
//                the gathered state is the unsharded one and resumes exactly; apply_if_finite
//                skips on every rank when one rank's gradients hold an Inf
//   hang         rank 1 stops answering; rank 0 must throw DistError within LOOM_DIST_TIMEOUT
//   die          rank 1 exits abruptly mid-run; the job must end instead of hanging
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cmath>
#include <cstring>
#include <limits>
#include <optional>
#include <string>
#include <thread>

#include "core/grad.h"
#include "core/ops/elementwise.h"
#include "core/ops/loss.h"
#include "core/ops/reduce.h"
#include "core/ops/shape.h"
#include "core/random.h"
#include "modules/layers/normalization.h"
#include "modules/models/cnn.h"
#include "optim/optimizers.h"
#include "optim/transform.h"
#include "optim/wrappers.h"
#include "train/dist/dist.h"
#include "train/dist/gradient_reducer.h"
#include "train/dist/zero.h"

namespace loom {
namespace {

int g_failures = 0;

#define DP_CHECK(cond, ...)                                                                  \
  do {                                                                                      \
    if (!(cond)) {                                                                          \
      ++g_failures;                                                                         \
      std::fprintf(stderr, "rank %d: CHECK FAILED %s:%d: %s %s\n", dist::rank(), __FILE__,  \
                   __LINE__, #cond, detail::cat(__VA_ARGS__).c_str());                      \
    }                                                                                       \
  } while (0)

/// Elements of `got` that differ from `want` (both compared as float64 on the host).
int64_t count_wrong(const Tensor& got, const std::vector<double>& want) {
  std::vector<double> g = got.to(DType::F64).contiguous().to_vector<double>();
  if (g.size() != want.size()) return int64_t(std::max(g.size(), want.size()));
  int64_t wrong = 0;
  for (size_t i = 0; i < g.size(); ++i) wrong += g[i] != want[i];
  return wrong;
}

/// Rank r's test values: (r + 1) * (i % 7 + 1), exact in bfloat16 for every sum and mean here.
Tensor pattern(int r, int64_t n, DType dtype, int64_t offset = 0) {
  std::vector<double> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) v[size_t(i)] = double(r + 1) * double((i + offset) % 7 + 1);
  return from_vector<double>(v, {n}).to(dtype);
}
std::vector<double> pattern_values(double scale, int64_t n, int64_t offset = 0) {
  std::vector<double> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) v[size_t(i)] = scale * double((i + offset) % 7 + 1);
  return v;
}

void collectives() {
  const int r = dist::rank(), w = dist::world_size();
  const double total = w * (w + 1) / 2.0, avg = total / w;
  for (DType dt : {DType::F32, DType::F64, DType::BF16}) {
    // 8 bytes .. 64 MB (float32: 2 .. 16M elements); the largest only for float32.
    for (int64_t n : {int64_t(2), int64_t(1000), int64_t(1) << 18, int64_t(1) << 24}) {
      // The TCP store backend (loom launch without MPI) moves O(world^2) bytes: skip 64 MB.
      if (n == (int64_t(1) << 24) &&
          (dt != DType::F32 || dist::communicator().backend() == "tcp"))
        continue;
      std::string what = detail::cat(dtype_name(dt), " n=", n);
      Tensor x = pattern(r, n, dt);
      Tensor s = dist::all_reduce(x, dist::ReduceOp::Sum);
      DP_CHECK(s.dtype() == dt && s.shape() == x.shape(), what);
      DP_CHECK(count_wrong(s, pattern_values(total, n)) == 0, "all_reduce sum ", what);
      DP_CHECK(count_wrong(dist::all_reduce(x, dist::ReduceOp::Mean), pattern_values(avg, n)) == 0,
               "all_reduce mean ", what);
      DP_CHECK(count_wrong(x, pattern_values(r + 1, n)) == 0, "input unchanged ", what);
      if (n > (int64_t(1) << 18)) continue;
      DP_CHECK(count_wrong(dist::broadcast(x, w - 1), pattern_values(w, n)) == 0, "broadcast ",
               what);
      Tensor g = dist::all_gather(x);
      DP_CHECK(g.shape() == Shape({w, n}), "all_gather shape ", shape_str(g.shape()));
      for (int q = 0; q < w; ++q)
        DP_CHECK(count_wrong(slice_axis(g, 0, q, q + 1).reshape({n}), pattern_values(q + 1, n)) == 0,
                 "all_gather row ", q, " ", what);
      Tensor big = pattern(r, n * w, dt);
      Tensor rs = dist::reduce_scatter(big, dist::ReduceOp::Sum);
      DP_CHECK(count_wrong(rs, pattern_values(total, n, int64_t(r) * n)) == 0, "reduce_scatter ",
               what);
      Tensor rm = dist::reduce_scatter(big, dist::ReduceOp::Mean);
      DP_CHECK(count_wrong(rm, pattern_values(avg, n, int64_t(r) * n)) == 0,
               "reduce_scatter mean ", what);
    }
  }
  dist::barrier();

  // Trees: several buckets (tiny bucket size), mixed dtypes, broadcast from rank 0.
  Tree t;
  t.set("a/kernel", pattern(r, 300, DType::F32).reshape({30, 10}));
  t.set("a/bias", pattern(r, 10, DType::F64));
  t.set("b/scale", pattern(r, 50, DType::BF16));
  t.set("c", pattern(r, 1, DType::F32).reshape({}));
  size_t saved = dist::bucket_bytes();
  for (size_t bytes : {size_t(64), saved}) {
    dist::set_bucket_bytes(bytes);
    Tree ps = dist::psum(t), pm = dist::pmean(t), bc = dist::broadcast(t, 0);
    for (auto& [path, leaf] : t.flatten()) {
      int64_t n = leaf.numel();
      DP_CHECK(ps.at(path).tensor().shape() == leaf.shape() &&
                   ps.at(path).tensor().dtype() == leaf.dtype(), path);
      DP_CHECK(count_wrong(ps.at(path).tensor(), pattern_values(total, n)) == 0, "psum ", path);
      DP_CHECK(count_wrong(pm.at(path).tensor(), pattern_values(avg, n)) == 0, "pmean ", path);
      DP_CHECK(count_wrong(bc.at(path).tensor(), pattern_values(1, n)) == 0, "broadcast ", path);
    }
  }
  dist::set_bucket_bytes(saved);

  // The differentiable pmean: loss_r = sum(pmean(x) * (r + 1)) has gradient pmean(r + 1).
  Tree p;
  p.set("x", pattern(0, 5, DType::F64));
  auto [l2, g2] = value_and_grad([&](const Tree& q) {
    return sum(dist::pmean(q.at("x").tensor()) * double(r + 1));
  })(p);
  DP_CHECK(count_wrong(g2.at("x").tensor(), std::vector<double>(5, avg)) == 0,
           "pmean gradient ", g2.at("x").tensor().str());
  (void)l2;
}

// --- the DDP equivalence test (PyTorch's _test_DDP_niter) -----------------------------------

constexpr int64_t kGlobalBatch = 8, kSteps = 5, kSide = 12;

struct Batch {
  Tensor x, labels;
};
Batch global_batch(int64_t step) {
  random::Key k = random::fold_in(random::key(1234), uint32_t(step));
  Tensor x = random::normal(random::fold_in(k, 0), {kGlobalBatch, kSide, kSide, 1});
  std::vector<int32_t> labels(kGlobalBatch);
  for (int64_t i = 0; i < kGlobalBatch; ++i) labels[size_t(i)] = int32_t((i * 3 + step) % 10);
  return {x, from_vector<int32_t>(labels, {kGlobalBatch})};
}

Tree cnn_train(Tree params, bool distributed) {
  nn::models::CNN model;
  optim::GradientTransformation tx = optim::sgd(0.05, 0.9);
  Tree opt_state = tx.init(params);
  for (int64_t step = 0; step < kSteps; ++step) {
    Batch b = global_batch(step);
    if (distributed) {
      dist::Shard s = dist::shard(kGlobalBatch, dist::rank(), dist::world_size());
      b.x = slice_axis(b.x, 0, s.begin, s.end);
      b.labels = slice_axis(b.labels, 0, s.begin, s.end);
    }
    auto loss_fn = [&](const Tree& p) {
      Tensor logits = model.apply(nn::variables({{"params", p}}), b.x);
      return mean(softmax_cross_entropy_with_integer_labels(logits, b.labels));
    };
    auto [loss, grads] = value_and_grad(loss_fn)(params);
    if (distributed) grads = dist::pmean(grads);
    std::tie(params, opt_state) = optim::update_and_apply(tx, grads, opt_state, params);
  }
  return params;
}

void ddp() {
  const int r = dist::rank();
  Tensor sample = zeros({1, kSide, kSide, 1});
  // Every rank starts from different params: the broadcast from rank 0 must make them equal.
  Tree mine = nn::models::CNN{}.init(random::key(100 + r), sample)["params"];
  Tree params = dist::broadcast(mine, 0);
  Tree reference_init = nn::models::CNN{}.init(random::key(100), sample)["params"];
  DP_CHECK(tree_allclose(params, reference_init, 0, 0), "broadcast params from rank 0");
  Tree trained = cnn_train(params, true);
  Tree baseline = cnn_train(reference_init, false);
  DP_CHECK(tree_allclose(trained, baseline, 1e-5, 1e-6), "DDP params != single-process params");
  // All ranks hold bitwise the same params.
  DP_CHECK(tree_allclose(trained, dist::broadcast(trained, 0), 0, 0), "ranks disagree");
  DP_CHECK(!tree_allclose(trained, reference_init, 1e-3, 1e-3), "training changed nothing");
}

// --- BatchNorm across replicas -----------------------------------------------------------------

struct BnNet : nn::Module<BnNet> {
  std::optional<std::string> axis = {};
  Tensor call(const Tensor& x) const {
    Tensor h = nn::Dense{.features = 6}(x);
    h = nn::BatchNorm{.axis_name = axis}(h);
    return nn::Dense{.features = 1}(nn::relu(h));
  }
};

struct BnResult {
  Tree params, stats;
  Tensor y0;  // first step's output for this process's examples
};

BnResult bn_train(Tree vars, bool distributed, int64_t batch) {
  BnNet model{.axis = distributed ? std::optional<std::string>("batch") : std::nullopt};
  Tree params = vars["params"], stats = vars["batch_stats"];
  optim::GradientTransformation tx = optim::sgd(0.1);
  Tree opt_state = tx.init(params);
  BnResult out;
  for (int64_t step = 0; step < 3; ++step) {
    random::Key k = random::fold_in(random::key(77), uint32_t(step));
    Tensor x = random::normal(k, {batch, 5}, DType::F64).to(DType::F32) * 2.0 + 0.5;
    Tensor target = random::normal(random::fold_in(k, 1), {batch, 1});
    if (distributed) {
      dist::Shard s = dist::shard(batch, dist::rank(), dist::world_size());
      x = slice_axis(x, 0, s.begin, s.end);
      target = slice_axis(target, 0, s.begin, s.end);
    }
    auto loss_fn = [&](const Tree& p) {
      auto [y, updates] = model.apply_mutable(
          nn::variables({{"params", p}, {"batch_stats", stats}}), {"batch_stats"}, x);
      return std::pair{mean(square(y - target)), std::pair{y.detach(), updates}};
    };
    auto [loss, aux, grads] = value_and_grad_aux(loss_fn)(params);
    if (step == 0) out.y0 = aux.first;
    stats = aux.second["batch_stats"];
    if (distributed) grads = dist::pmean(grads);
    std::tie(params, opt_state) = optim::update_and_apply(tx, grads, opt_state, params);
  }
  out.params = params;
  out.stats = stats;
  return out;
}

void batchnorm() {
  const int w = dist::world_size();
  const int64_t batch = 4 * w;
  Tree vars = BnNet{}.init(random::key(5), zeros({1, 5}));
  BnResult d = bn_train(vars, true, batch);
  BnResult ref = bn_train(vars, false, batch);
  dist::Shard s = dist::shard(batch, dist::rank(), w);
  Tensor ref_y0 = slice_axis(ref.y0, 0, s.begin, s.end);
  DP_CHECK(tree_allclose(Tree(d.y0), Tree(ref_y0), 1e-5, 1e-6), "sync BatchNorm output");
  DP_CHECK(tree_allclose(d.stats, ref.stats, 1e-5, 1e-6), "sync BatchNorm batch_stats");
  DP_CHECK(tree_allclose(d.params, ref.params, 1e-5, 1e-6), "sync BatchNorm params");
  // Without the cross-replica reducer the statistics would be local: the test would notice.
  BnNet local_model;
  Tensor x_local = slice_axis(random::normal(random::fold_in(random::key(77), 0), {batch, 5},
                                             DType::F64).to(DType::F32) * 2.0 + 0.5,
                              0, s.begin, s.end);
  auto [y_local, unused] = local_model.apply_mutable(vars, {"batch_stats"}, x_local);
  (void)unused;
  DP_CHECK(!tree_allclose(Tree(y_local), Tree(ref_y0), 1e-5, 1e-6), "local stats look global");
}

// Unequal local batches: rank r holds 3 + 2r consecutive examples of the joint batch. The loss is
// the joint batch's mean (each rank sums its squared errors and divides by the joint size), so
// psum(grads) is the joint gradient; BatchNorm's statistics are weighted by the local counts.
dist::Shard unequal_shard(int r) {
  int64_t begin = 0;
  for (int q = 0; q < r; ++q) begin += 3 + 2 * q;
  return {begin, begin + 3 + 2 * r};
}

BnResult bn_train_unequal(Tree vars, bool distributed, int64_t joint) {
  BnNet model{.axis = distributed ? std::optional<std::string>("batch") : std::nullopt};
  Tree params = vars["params"], stats = vars["batch_stats"];
  optim::GradientTransformation tx = optim::sgd(0.1);
  Tree opt_state = tx.init(params);
  BnResult out;
  for (int64_t step = 0; step < 3; ++step) {
    random::Key k = random::fold_in(random::key(91), uint32_t(step));
    Tensor x = random::normal(k, {joint, 5}, DType::F64).to(DType::F32) * 2.0 + 0.5;
    Tensor target = random::normal(random::fold_in(k, 1), {joint, 1});
    if (distributed) {
      dist::Shard s = unequal_shard(dist::rank());
      x = slice_axis(x, 0, s.begin, s.end);
      target = slice_axis(target, 0, s.begin, s.end);
    }
    auto loss_fn = [&](const Tree& p) {
      auto [y, updates] = model.apply_mutable(
          nn::variables({{"params", p}, {"batch_stats", stats}}), {"batch_stats"}, x);
      return std::pair{sum(square(y - target)) * (1.0 / double(joint)),
                       std::pair{y.detach(), updates}};
    };
    auto [loss, aux, grads] = value_and_grad_aux(loss_fn)(params);
    if (step == 0) out.y0 = aux.first;
    stats = aux.second["batch_stats"];
    if (distributed) grads = dist::psum(grads);
    std::tie(params, opt_state) = optim::update_and_apply(tx, grads, opt_state, params);
  }
  out.params = params;
  out.stats = stats;
  return out;
}

void batchnorm_unequal() {
  const int w = dist::world_size();
  const int64_t joint = unequal_shard(w - 1).end;  // 3 + 5 = 8 on 2 ranks
  Tree vars = BnNet{}.init(random::key(6), zeros({1, 5}));
  BnResult d = bn_train_unequal(vars, true, joint);
  BnResult ref = bn_train_unequal(vars, false, joint);
  dist::Shard s = unequal_shard(dist::rank());
  DP_CHECK(d.y0.dim(0) == s.size(), "local batch ", shape_str(d.y0.shape()));
  Tensor ref_y0 = slice_axis(ref.y0, 0, s.begin, s.end);
  DP_CHECK(tree_allclose(Tree(d.y0), Tree(ref_y0), 1e-5, 1e-6), "unequal sync BatchNorm output");
  DP_CHECK(tree_allclose(d.stats, ref.stats, 1e-5, 1e-6), "unequal sync BatchNorm batch_stats");
  DP_CHECK(tree_allclose(d.params, ref.params, 1e-5, 1e-6), "unequal sync BatchNorm params");
  // Equal weights (a reducer that ignores the count) average the ranks' statistics, not the joint
  // batch's: the weighting is what makes the test pass.
  nn::set_axis_reducer("batch", [](const Tensor& stats, int64_t) { return dist::pmean(stats); });
  BnResult unweighted = bn_train_unequal(vars, true, joint);
  dist::register_axis("batch");
  DP_CHECK(!tree_allclose(unweighted.stats, ref.stats, 1e-5, 1e-6),
           "unweighted statistics match the joint batch: the test cannot see the weighting");
  // pmean_weighted itself: weights 3 and 5 (rank r: 3 + 2r) of x_r = r + 1 give
  // sum_r (3 + 2r)(r + 1) / sum_r (3 + 2r); gradient of sum(out) is psum(1) * w_r / W.
  double num = 0, den = 0;
  for (int q = 0; q < w; ++q) {
    num += (3.0 + 2 * q) * (q + 1);
    den += 3.0 + 2 * q;
  }
  const int r = dist::rank();
  Tree p;
  p.set("x", full({4}, double(r + 1), DType::F64));
  auto [val, g] = value_and_grad([&](const Tree& q) {
    return sum(dist::pmean_weighted(q.at("x").tensor(), 3.0 + 2 * r));
  })(p);
  DP_CHECK(std::abs(val.item<double>() - 4 * num / den) < 1e-12, "pmean_weighted value ",
           val.item<double>(), " want ", 4 * num / den);
  for (double gi : g.at("x").tensor().to_vector<double>())
    DP_CHECK(std::abs(gi - w * (3.0 + 2 * r) / den) < 1e-12, "pmean_weighted gradient ", gi);
}

// --- the overlapped gradient all-reduce ---------------------------------------------------------

void overlap() {
  const int r = dist::rank(), w = dist::world_size();
  nn::models::CNN model;
  Tree params = dist::broadcast(nn::models::CNN{}.init(random::key(100), zeros({1, kSide, kSide, 1}))["params"], 0);
  Batch b = global_batch(0);
  dist::Shard s = dist::shard(kGlobalBatch, r, w);
  Tensor x = slice_axis(b.x, 0, s.begin, s.end), labels = slice_axis(b.labels, 0, s.begin, s.end);
  auto loss_fn = [&](const Tree& p) {
    Tensor logits = model.apply(nn::variables({{"params", p}}), x);
    return mean(softmax_cross_entropy_with_integer_labels(logits, labels));
  };
  // Two ranks: a + b rounds the same whichever way a collective adds, so the paths agree bitwise.
  // More ranks: MPI may choose another summation order for another message size.
  const double tol = w == 2 || dist::communicator().backend() == "tcp" ? 0 : 1e-6;
  const size_t saved = dist::bucket_bytes();
  for (size_t bytes : {size_t(4096), saved}) {
    dist::set_bucket_bytes(bytes);
    auto [loss, grads] = value_and_grad(loss_fn)(params);
    Tree plain = dist::pmean(grads);
    auto [loss2, overlapped] = dist::value_and_grad_pmean(loss_fn)(params);
    DP_CHECK(tree_allclose(overlapped, plain, tol, tol), "overlapped != plain pmean, bucket ",
             bytes);
    DP_CHECK(loss2.item<double>() == loss.item<double>(), "loss");
  }

  // The order of events: with 4 KiB buckets the first all-reduce starts while most gradients
  // are still to come.
  dist::set_bucket_bytes(4096);
  dist::GradientReducer reducer(params);
  const int64_t n = int64_t(params.leaf_count());
  {
    auto [traced, leaves] = loom::detail::make_leaves(params);
    autograd::RecordingGuard recording(true);
    autograd::backward(loss_fn(traced), leaves, reducer.hook());
  }
  reducer.finish();
  const std::vector<int64_t>& when = reducer.launched_after();
  DP_CHECK(reducer.bucket_count() >= 3 && when.size() == reducer.bucket_count(), "buckets ",
           reducer.bucket_count(), ", launched ", when.size());
  DP_CHECK(!when.empty() && when.front() < n / 2, "the first bucket waited for ", when.front(),
           " of ", n, " gradients");
  DP_CHECK(when.size() >= 2 && when[when.size() - 2] < n, "only the last bucket may wait for all");
  for (size_t i = 1; i < when.size(); ++i) DP_CHECK(when[i] >= when[i - 1], "launch order");
  if (r == 0) {
    std::string order;
    for (int64_t k : when) order += (order.empty() ? "" : ", ") + std::to_string(k);
    std::printf("overlap: %zu buckets launched after %s of %lld gradients\n",
                reducer.bucket_count(), order.c_str(), static_cast<long long>(n));
  }
  dist::set_bucket_bytes(saved);

  // Mixed dtypes: float64 and bfloat16 leaves travel in their own buckets (bfloat16 in float32).
  Tree mixed;
  mixed.set("a", pattern(r, 300, DType::F32));
  mixed.set("b", pattern(r, 40, DType::F64));
  mixed.set("c", pattern(0, 24, DType::BF16));
  mixed.set("d", pattern(r, 70, DType::F32));
  auto mixed_loss = [&](const Tree& p) {
    Tensor l = sum(square(p.at("a").tensor())) + sum(p.at("b").tensor()).to(DType::F32) * 0.5 +
               sum(p.at("c").tensor().to(DType::F32) * double(r + 1)) +
               sum(p.at("d").tensor() * p.at("d").tensor() * 3.0);
    return l;
  };
  dist::set_bucket_bytes(256);
  auto [ml, mg] = value_and_grad(mixed_loss)(mixed);
  Tree mplain = dist::pmean(mg);
  Tree mover = dist::value_and_grad_pmean(mixed_loss)(mixed).second;
  dist::set_bucket_bytes(saved);
  DP_CHECK(tree_allclose(mover, mplain, tol, tol), "mixed dtypes");
  for (auto& [path, leaf] : mixed.flatten())
    DP_CHECK(mover.at(path).tensor().dtype() == leaf.dtype() &&
             mover.at(path).tensor().shape() == leaf.shape(), path);
  (void)ml;
}

// --- ZeRO-1 ---------------------------------------------------------------------------------------

void zero() {
  const int w = dist::world_size();
  nn::models::CNN model;
  Tree init = nn::models::CNN{}.init(random::key(100), zeros({1, kSide, kSide, 1}))["params"];
  optim::GradientTransformation tx = optim::adamw(1e-2);
  auto local_grads = [&](const Tree& params, int64_t step) {
    Batch b = global_batch(step);
    dist::Shard s = dist::shard(kGlobalBatch, dist::rank(), w);
    Tensor x = slice_axis(b.x, 0, s.begin, s.end), labels = slice_axis(b.labels, 0, s.begin, s.end);
    return value_and_grad([&](const Tree& p) {
      return mean(softmax_cross_entropy_with_integer_labels(
          model.apply(nn::variables({{"params", p}}), x), labels));
    })(params).second;
  };
  Tree plain = init, opt_state = tx.init(init);
  for (int64_t step = 0; step < kSteps; ++step)
    std::tie(plain, opt_state) =
        optim::update_and_apply(tx, dist::pmean(local_grads(plain, step)), opt_state, plain);

  dist::ShardedOptimizer sharded(tx, init);
  Tree params = init;
  for (int64_t step = 0; step < kSteps; ++step) params = sharded.step(params, local_grads(params, step));
  DP_CHECK(tree_allclose(params, plain, 1e-5, 1e-6), "ZeRO-1 params != unsharded params");
  DP_CHECK(tree_allclose(params, dist::broadcast(params, 0), 0, 0), "ranks disagree");
  DP_CHECK(!tree_allclose(params, init, 1e-3, 1e-3), "training changed nothing");

  // Each rank holds ceil(N / w) elements of mu and of nu, not N.
  const int64_t n = init.total_size(), shard = (n + w - 1) / w;
  DP_CHECK(sharded.groups() == std::vector<std::string>{"float32@cpu"}, "groups");
  DP_CHECK(sharded.shard_size("float32@cpu") == shard, "shard size ",
           sharded.shard_size("float32@cpu"), " want ", shard);
  int64_t vectors = 0;
  for (auto& [path, leaf] : sharded.state().flatten()) {
    if (leaf.ndim() == 0) continue;  // the step count
    DP_CHECK(leaf.shape() == Shape({shard}), path, " has shape ", shape_str(leaf.shape()));
    ++vectors;
  }
  DP_CHECK(vectors == 2, "adamw keeps mu and nu, found ", vectors, " vectors");
  DP_CHECK(sharded.state().total_size() <= tx.init(init).total_size() / w + 2 * w,
           "state of ", sharded.state().total_size(), " elements on each of ", w, " ranks");

  // Checkpoints: the gathered state is the unsharded one, and a fresh optimizer loaded from it
  // continues exactly where the unsharded run does.
  Tree full = sharded.full_state();
  DP_CHECK(full.first_difference(opt_state).empty(), "full_state layout differs at ",
           full.first_difference(opt_state));
  DP_CHECK(tree_allclose(full, opt_state, 1e-5, 1e-6), "full_state != the unsharded state");
  dist::ShardedOptimizer resumed(tx, init);
  resumed.load_full_state(opt_state);
  Tree next = resumed.step(plain, local_grads(plain, kSteps));
  Tree next_plain = optim::update_and_apply(tx, dist::pmean(local_grads(plain, kSteps)), opt_state, plain).first;
  DP_CHECK(tree_allclose(next, next_plain, 1e-5, 1e-6), "resumed ZeRO-1 step != unsharded step");

  // Skipping non-finite steps: an Inf in one rank's gradients lands in one shard only, yet every
  // rank must skip, as apply_if_finite does on the averaged gradients (params and counters).
  optim::GradientTransformation guarded = optim::apply_if_finite(tx, 3);
  auto poisoned = [&](const Tree& params, int64_t step) {
    Tree g = local_grads(params, step);
    if (step == 1 && dist::rank() == w - 1) {
      const std::string last = g.flatten().back().first;
      g.set(last, g.at(last).tensor() * std::numeric_limits<double>::infinity());
    }
    return g;
  };
  Tree gplain = init, gstate = guarded.init(init);
  for (int64_t step = 0; step < 3; ++step)
    std::tie(gplain, gstate) =
        optim::update_and_apply(guarded, dist::pmean(poisoned(gplain, step)), gstate, gplain);
  dist::ShardedOptimizer gsharded(guarded, init, /*skips_nonfinite=*/true);
  Tree gparams = init;
  for (int64_t step = 0; step < 3; ++step) gparams = gsharded.step(gparams, poisoned(gparams, step));
  DP_CHECK(tree_allclose(gparams, gplain, 1e-5, 1e-6), "apply_if_finite: ZeRO-1 params != unsharded");
  DP_CHECK(tree_allclose(gparams, dist::broadcast(gparams, 0), 0, 0), "apply_if_finite: ranks disagree");
  DP_CHECK(gsharded.state()["total_notfinite"].tensor().item<int64_t>() == 1, "skipped ",
           gsharded.state()["total_notfinite"].tensor().item<int64_t>(), " steps, want 1");
}

// --- faults ----------------------------------------------------------------------------------

int hang() {
  const int r = dist::rank();
  Tensor x = ones({16});
  dist::all_reduce(x);  // one healthy collective first
  if (r != 0) {
    std::this_thread::sleep_for(std::chrono::seconds(60));  // hangs: never joins the next one
    return 0;
  }
  auto start = std::chrono::steady_clock::now();
  try {
    dist::all_reduce(x);
  } catch (const dist::DistError& e) {
    double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::printf("DistError caught on rank 0: %s (after %.1f s)\n", e.what(), s);
    std::fflush(stdout);
    dist::abort(3);  // stops the hung rank too
  }
  std::printf("rank 0: the collective with a hung peer completed?\n");
  return 1;
}

int die() {
  const int r = dist::rank();
  Tensor x = ones({16});
  for (int step = 0; step < 1000; ++step) {
    if (r == 1 && step == 3) std::_Exit(9);  // abrupt: no finalize, no goodbye
    dist::all_reduce(x);
  }
  return 0;
}

}  // namespace
}  // namespace loom

int main(int argc, char** argv) {
  using namespace loom;
  if (argc != 2) {
    std::fprintf(stderr, "usage: loom_dp_test collectives|ddp|batchnorm|batchnorm_unequal|overlap|zero|hang|die\n");
    return 2;
  }
  std::string mode = argv[1];
  try {
    dist::init();
    if (mode == "collectives") collectives();
    else if (mode == "ddp") ddp();
    else if (mode == "batchnorm") batchnorm();
    else if (mode == "batchnorm_unequal") batchnorm_unequal();
    else if (mode == "overlap") overlap();
    else if (mode == "zero") zero();
    else if (mode == "hang") return hang();
    else if (mode == "die") return die();
    else {
      std::fprintf(stderr, "unknown mode %s\n", mode.c_str());
      return 2;
    }
    dist::barrier();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "rank %d: error: %s\n", dist::rank(), e.what());
    return 1;
  }
  std::printf("rank %d of %d (%s): %s %s\n", dist::rank(), dist::world_size(),
              dist::launch_info().launcher.c_str(), mode.c_str(), g_failures ? "FAILED" : "OK");
  dist::finalize();
  return g_failures ? 1 : 0;
}
