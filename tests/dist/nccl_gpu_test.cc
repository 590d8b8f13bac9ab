// The NCCL path of loom::dist on one GPU: a world-of-one NCCL communicator on cuda:0, installed
// with dist::set_gpu_communicator so the tensor and tree collectives run through NCCL (without
// it a world of one returns its input and never reaches NCCL). With one rank every collective's
// value is its input, so the checks are: the call goes through NCCL, the result is a new device
// tensor of the right shape/dtype with no wrong element, and the input is unchanged. More ranks
// (several GPUs) run the same code under `loom launch` / mpirun via loom_dp_test.
#include <gtest/gtest.h>

#include "core/grad.h"
#include "core/ops/elementwise.h"
#include "core/ops/reduce.h"
#include "core/ops/shape.h"
#include "tests/support/testing.h"
#include "train/dist/dist.h"
#include "train/dist/nccl_communicator.h"

namespace loom {
namespace {

/// i % 7 + 1: small integers, exact in bfloat16.
Tensor pattern(int64_t n, DType dtype) {
  std::vector<double> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) v[size_t(i)] = double(i % 7 + 1);
  return from_vector<double>(v, {n}).to(dtype);
}

/// Elements that differ (compared exactly, in float64 on the host).
int64_t count_wrong(const Tensor& got, const Tensor& want) {
  std::vector<double> g = got.to(Device::cpu()).to(DType::F64).contiguous().to_vector<double>();
  std::vector<double> w = want.to(Device::cpu()).to(DType::F64).contiguous().to_vector<double>();
  if (g.size() != w.size()) return int64_t(std::max(g.size(), w.size()));
  int64_t wrong = 0;
  for (size_t i = 0; i < g.size(); ++i) wrong += g[i] != w[i];
  return wrong;
}

class NcclWorldOfOne : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!cuda_available()) return;  // the test body skips
    ASSERT_TRUE(dist::nccl_compiled());
    ASSERT_EQ(dist::world_size(), 1);
    dist::set_gpu_communicator(
        dist::make_nccl_communicator(0, 1, 0, [](void*, size_t) {}), 0);
  }
  void TearDown() override { dist::finalize(); }
};

TEST_F(NcclWorldOfOne, CommunicatorIsNccl) {
  LOOM_REQUIRE_GPU();
  dist::Communicator& c = dist::communicator(Device::cuda(0));
  EXPECT_EQ(c.backend(), "nccl");
  EXPECT_EQ(c.rank(), 0);
  EXPECT_EQ(c.world_size(), 1);
  EXPECT_TRUE(c.reduces(DType::BF16));
  // CPU tensors still use the local (identity) communicator.
  EXPECT_EQ(dist::communicator(Device::cpu()).backend(), "local");
  // One device per rank: cuda:1 is not this rank's device.
  EXPECT_THROW(dist::communicator(Device::cuda(1)), dist::DistError);
  dist::barrier();
}

TEST_F(NcclWorldOfOne, TensorCollectivesF32AndBf16) {
  LOOM_REQUIRE_GPU();
  for (DType dt : {DType::F32, DType::BF16}) {
    // 8 bytes .. 4 MB (float32).
    for (int64_t n : {int64_t(2), int64_t(1000), int64_t(1) << 20}) {
      SCOPED_TRACE(detail::cat(dtype_name(dt), " n=", n));
      Tensor host = pattern(n, dt);
      Tensor x = host.to(Device::cuda(0));
      for (dist::ReduceOp op : {dist::ReduceOp::Sum, dist::ReduceOp::Mean}) {
        Tensor s = dist::all_reduce(x, op);
        EXPECT_TRUE(s.is_cuda());
        EXPECT_EQ(s.dtype(), dt);
        EXPECT_EQ(s.shape(), x.shape());
        EXPECT_NE(s.raw_data(), x.raw_data());  // a new tensor: collectives write in place
        EXPECT_EQ(count_wrong(s, host), 0) << "all_reduce " << dist::reduce_op_name(op);
      }
      EXPECT_EQ(count_wrong(dist::broadcast(x, 0), host), 0) << "broadcast";
      Tensor g = dist::all_gather(x);
      EXPECT_EQ(g.shape(), Shape({1, n}));
      EXPECT_EQ(count_wrong(g.reshape({n}), host), 0) << "all_gather";
      for (dist::ReduceOp op : {dist::ReduceOp::Sum, dist::ReduceOp::Mean}) {
        Tensor rs = dist::reduce_scatter(x.reshape({n, 1}), op);
        EXPECT_EQ(rs.shape(), Shape({n, 1}));
        EXPECT_EQ(count_wrong(rs.reshape({n}), host), 0) << "reduce_scatter";
      }
      EXPECT_EQ(count_wrong(x, host), 0) << "input changed";
    }
  }
  EXPECT_THROW(dist::broadcast(pattern(4, DType::F32).to(Device::cuda(0)), 1), dist::DistError);
}

TEST_F(NcclWorldOfOne, PmeanOnATree) {
  LOOM_REQUIRE_GPU();
  Tree t;
  t.set("a/kernel", pattern(300, DType::F32).reshape({30, 10}).to(Device::cuda(0)));
  t.set("a/bias", pattern(10, DType::F32).to(Device::cuda(0)));
  t.set("b/scale", pattern(50, DType::BF16).to(Device::cuda(0)));
  t.set("c", pattern(1, DType::F32).reshape({}).to(Device::cuda(0)));
  size_t saved = dist::bucket_bytes();
  for (size_t bytes : {size_t(64), saved}) {  // several buckets, then one per dtype
    dist::set_bucket_bytes(bytes);
    Tree pm = dist::pmean(t), ps = dist::psum(t);
    for (auto& [path, leaf] : t.flatten()) {
      SCOPED_TRACE(detail::cat(path, " bucket ", bytes));
      const Tensor& m = pm.at(path).tensor();
      EXPECT_TRUE(m.is_cuda());
      EXPECT_EQ(m.shape(), leaf.shape());
      EXPECT_EQ(m.dtype(), leaf.dtype());
      EXPECT_EQ(count_wrong(m, leaf), 0) << "pmean";
      EXPECT_EQ(count_wrong(ps.at(path).tensor(), leaf), 0) << "psum";
    }
  }
  dist::set_bucket_bytes(saved);
}

TEST_F(NcclWorldOfOne, DifferentiablePmeanAndWeighted) {
  LOOM_REQUIRE_GPU();
  Tree p;
  p.set("x", pattern(5, DType::F32).to(Device::cuda(0)));
  auto [l, g] = value_and_grad([](const Tree& q) {
    return sum(dist::pmean(q.at("x").tensor()) * 3.0);
  })(p);
  EXPECT_ALLCLOSE(g.at("x").tensor().to(Device::cpu()), full({5}, 3.0), 1e-6, 0);
  EXPECT_NEAR(l.to(Device::cpu()).item<float>(), 3.0f * (1 + 2 + 3 + 4 + 5), 1e-4);
  // One rank: the weighted mean is the input and its gradient psum(1) * w / W = 1.
  auto [lw, gw] = value_and_grad([](const Tree& q) {
    return sum(dist::pmean_weighted(q.at("x").tensor(), 7.0));
  })(p);
  EXPECT_ALLCLOSE(gw.at("x").tensor().to(Device::cpu()), full({5}, 1.0), 1e-6, 0);
  EXPECT_NEAR(lw.to(Device::cpu()).item<float>(), 15.0f, 1e-4);
}

}  // namespace
}  // namespace loom
