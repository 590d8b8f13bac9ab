// Pinned host memory on a GPU: copies from it are queued without waiting, and a pinned block is
// not reused while a queued copy may still read it.
#include <gtest/gtest.h>

#include "core/memory.h"
#include "core/ops/elementwise.h"
#include "core/ops/linalg.h"
#include "core/tensor.h"
#include "tests/support/testing.h"
#include "train/data/loader.h"

namespace loom {
namespace {

TEST(PinnedGpu, PinnedTensorsCopyToTheGpuExactly) {
  LOOM_REQUIRE_GPU();
  Tensor x = arange(1000, DType::F32);
  Tensor p = x.pin_memory();
  EXPECT_TRUE(p.is_pinned());
  EXPECT_EQ(p.device(), Device::cpu());
  EXPECT_EQ(p.to(Device::cuda(0)).to_vector<float>(), x.to_vector<float>());
}

TEST(PinnedGpu, FreedBlocksWaitForQueuedCopies) {
  LOOM_REQUIRE_GPU();
  // Queue enough GPU work that the copies below are still pending when their host tensors die.
  Tensor a = ones({2048, 2048}, DType::F32, Device::cuda(0));
  for (int i = 0; i < 8; ++i) a = matmul(a, a) * (1.0 / 2048);
  const int64_t before_waited = pinned_memory_stats().waited_blocks;
  std::vector<Tensor> on_gpu;
  for (int i = 0; i < 32; ++i) {
    Tensor h = Tensor::empty_pinned({4096}, DType::I32);
    int32_t* d = h.data<int32_t>();
    for (int64_t k = 0; k < 4096; ++k) d[k] = int32_t(i * 10000 + k);
    on_gpu.push_back(h.to(Device::cuda(0)));  // h is freed at the end of this iteration
  }
  for (int i = 0; i < 32; ++i) {
    std::vector<int32_t> v = on_gpu[size_t(i)].to_vector<int32_t>();
    ASSERT_EQ(v[0], i * 10000) << "copy " << i << " read a reused block";
    ASSERT_EQ(v[4095], i * 10000 + 4095) << "copy " << i;
  }
  EXPECT_GT(pinned_memory_stats().waited_blocks, before_waited);
  EXPECT_EQ(a.to_vector<float>()[0], 1.0f);  // the queued work ran and stayed exact
}

TEST(PinnedGpu, LoaderBatchesOnTheGpuEqualTheCpuOnes) {
  LOOM_REQUIRE_GPU();
  std::vector<uint8_t> px(64 * 8 * 8 * 3);
  for (size_t i = 0; i < px.size(); ++i) px[i] = uint8_t(i * 7);
  std::vector<int32_t> labels(64);
  for (int i = 0; i < 64; ++i) labels[size_t(i)] = i % 10;
  train::Dataset data{"synthetic", from_vector(px, {64, 8, 8, 3}), from_vector(labels, {64}), 10};
  train::LoaderOptions opt{.batch_size = 16, .seed = 5, .augment = {.crop_padding = 2, .horizontal_flip = true}};
  train::DataLoader cpu_loader(data, opt);
  opt.device = Device::cuda(0);
  train::DataLoader gpu_loader(data, opt);
  for (int step = 0; step < 9; ++step) {  // past an epoch boundary
    train::Batch c = cpu_loader.next(), g = gpu_loader.next();
    ASSERT_EQ(g.inputs.device(), Device::cuda(0));
    EXPECT_EQ(g.inputs.to_vector<float>(), c.inputs.to_vector<float>()) << "step " << step;
    EXPECT_EQ(g.labels.to_vector<int32_t>(), c.labels.to_vector<int32_t>()) << "step " << step;
  }
  EXPECT_GT(pinned_memory_stats().reuses, 0);  // steady state: no cudaHostAlloc per batch
}

}  // namespace
}  // namespace loom
