#include "train/data/loader.h"

#include <omp.h>

#include <filesystem>
#include <iterator>
#include <set>

#include "tests/support/testing.h"

namespace loom::train {
namespace {

// 10 images 2x2x1 whose pixels all equal their index, labels = index.
Dataset tiny_images(int64_t n = 10) {
  std::vector<uint8_t> px;
  std::vector<int32_t> labels;
  for (int64_t i = 0; i < n; ++i) {
    for (int k = 0; k < 4; ++k) px.push_back(uint8_t(i));
    labels.push_back(int32_t(i));
  }
  return Dataset{"tiny", from_vector(px, {n, 2, 2, 1}), from_vector(labels, {n}), 10};
}

TEST(DataLoader, EpochVisitsEveryExampleOnceInASeededOrder) {
  DataLoader loader(tiny_images(), {.batch_size = 5, .seed = 3});
  EXPECT_EQ(loader.batches_per_epoch(), 2);
  std::set<int32_t> seen;
  std::vector<int32_t> first_epoch;
  for (int b = 0; b < 2; ++b) {
    Batch batch = loader.next();
    EXPECT_EQ(batch.inputs.shape(), (Shape{5, 2, 2, 1}));
    EXPECT_EQ(batch.inputs.dtype(), DType::F32);
    for (int32_t l : batch.labels.to_vector<int32_t>()) {
      seen.insert(l);
      first_epoch.push_back(l);
    }
    // pixel value / 255 equals the label: inputs and labels stay paired
    std::vector<float> v = batch.inputs.to_vector<float>();
    std::vector<int32_t> l = batch.labels.to_vector<int32_t>();
    for (size_t i = 0; i < l.size(); ++i) EXPECT_FLOAT_EQ(v[i * 4], float(l[i]) / 255.f);
  }
  EXPECT_EQ(seen.size(), 10u);
  EXPECT_NE(first_epoch, (std::vector<int32_t>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}));  // shuffled
  std::vector<int32_t> second_epoch;
  for (int b = 0; b < 2; ++b)
    for (int32_t l : loader.next().labels.to_vector<int32_t>()) second_epoch.push_back(l);
  EXPECT_NE(first_epoch, second_epoch);  // a new order each epoch

  DataLoader again(tiny_images(), {.batch_size = 5, .seed = 3, .prefetch = 0});
  std::vector<int32_t> replay;
  for (int b = 0; b < 2; ++b)
    for (int32_t l : again.next().labels.to_vector<int32_t>()) replay.push_back(l);
  EXPECT_EQ(first_epoch, replay);  // same seed, same order, with or without prefetching
}

// The threads of this process (Linux).
int64_t thread_count() {
  return std::distance(std::filesystem::directory_iterator("/proc/self/task"),
                       std::filesystem::directory_iterator());
}

TEST(DataLoader, PrefetchThreadStartsNoOpenMPTeam) {
  // A team of its own would take libgomp's threads past the cores, and libgomp would then put
  // the training step's workers to sleep between its parallel regions (docs/PERF.md, session 19).
  if (omp_get_max_threads() < 2) GTEST_SKIP() << "one OpenMP thread: no team to start";
#pragma omp parallel
  {
    // This thread's own team exists before the count.
  }
  const int64_t before = thread_count();
  // Each epoch's permutation of 20,000 examples draws its sort keys in an OpenMP loop, on the
  // prefetch thread from the second epoch on.
  DataLoader loader(tiny_images(20000), {.batch_size = 10000, .seed = 1});
  for (int b = 0; b < 5; ++b) loader.next();  // into the third epoch
  EXPECT_EQ(thread_count(), before + 1);      // the prefetch thread alone
}

TEST(DataLoader, SeekResumesExactly) {
  LoaderOptions opt{.batch_size = 3, .seed = 7, .augment = {.crop_padding = 1, .horizontal_flip = true}};
  DataLoader a(tiny_images(), opt);
  std::vector<Batch> straight;
  for (int i = 0; i < 7; ++i) straight.push_back(a.next());
  DataLoader b(tiny_images(), opt);
  b.seek(straight[4].epoch, straight[4].index);
  for (int i = 4; i < 7; ++i) {
    Batch x = b.next();
    EXPECT_ALLCLOSE(x.inputs, straight[size_t(i)].inputs, 0, 0);
    EXPECT_ALLCLOSE(x.labels, straight[size_t(i)].labels, 0, 0);
  }
  EXPECT_THROW(b.seek(0, 99), IndexError);
}

TEST(DataLoader, DropLastAndPartialBatches) {
  DataLoader keep(tiny_images(), {.batch_size = 4, .drop_last = false});
  EXPECT_EQ(keep.batches_per_epoch(), 3);
  keep.next();
  keep.next();
  EXPECT_EQ(keep.next().labels.dim(0), 2);
  DataLoader drop(tiny_images(), {.batch_size = 4});
  EXPECT_EQ(drop.batches_per_epoch(), 2);
  EXPECT_THROW(DataLoader(tiny_images(3), {.batch_size = 4}), ValueError);
}

TEST(DataLoader, NormalisationAndAugmentation) {
  Dataset d = tiny_images(4);
  DataLoader plain(d, {.batch_size = 4, .shuffle = false, .mean = {0.5f}, .stddev = {0.25f}});
  Batch b = plain.next();
  EXPECT_NEAR(b.inputs.to_vector<float>()[4 * 2], (2 / 255.f - 0.5f) / 0.25f, 1e-6);
  // Crop with padding shifts image content and brings in zeros at the border.
  DataLoader crop(d, {.batch_size = 4, .shuffle = false, .augment = {.crop_padding = 2}, .prefetch = 0});
  bool some_zero = false;
  for (int e = 0; e < 3; ++e) {
    Batch c = crop.next();
    std::vector<float> v = c.inputs.to_vector<float>();
    for (size_t i = 4; i < v.size(); ++i) some_zero |= v[i] == 0.f;
  }
  EXPECT_TRUE(some_zero);
}

TEST(DataLoader, TextWindowsPredictTheNextToken) {
  std::vector<int32_t> tokens(100);
  for (int i = 0; i < 100; ++i) tokens[size_t(i)] = i;
  Dataset text{"text", from_vector(tokens, {100}), Tensor(), 0};
  DataLoader loader(text, {.batch_size = 2, .sequence_length = 8});
  Batch b = loader.next();
  EXPECT_EQ(b.inputs.shape(), (Shape{2, 8}));
  std::vector<int32_t> x = b.inputs.to_vector<int32_t>(), y = b.labels.to_vector<int32_t>();
  for (size_t i = 0; i < x.size(); ++i) EXPECT_EQ(y[i], x[i] + 1);
  EXPECT_THROW(DataLoader(text, {.batch_size = 2}), ValueError);  // needs a sequence length
}

TEST(DataLoader, RejectsBadImages) {
  Dataset bad{"bad", zeros({4, 2, 2}), from_vector<int32_t>({0, 1, 2, 3}, {4}), 4};
  EXPECT_THROW(DataLoader(bad, {.batch_size = 2}), ShapeError);
}

}  // namespace
}  // namespace loom::train
