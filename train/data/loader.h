// The input pipeline: seeded per-epoch shuffling (jax.random.permutation), batching, image
// augmentation (random crop with padding, horizontal flip), normalisation to float32, and a
// background thread that prepares the next batches while the current step runs. Batches for a
// GPU are built in pinned memory and copied asynchronously (LoaderOptions::pin_memory).
//
// Every random choice is a function of (seed, epoch, batch index), so a run resumed at a
// position (epoch, batch) sees exactly the batches it would have seen.
//
//   DataLoader loader(train_set, {.batch_size = 128, .seed = 0, .device = device});
//   for (int64_t step = 0; step < steps; ++step) { Batch b = loader.next(); ... }
#pragma once
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <mutex>
#include <thread>
#include <vector>

#include "core/random.h"
#include "train/data/dataset.h"

namespace loom::train {

struct Batch {
  Tensor inputs;  // F32 [B, H, W, C] normalised images, or I32 [B, T] tokens
  Tensor labels;  // I32 [B], or I32 [B, T] next tokens
  int64_t epoch = 0, index = 0;  // position of this batch
};

struct ImageAugment {
  int64_t crop_padding = 0;      // pad by this many pixels (zeros), then crop back at random
  bool horizontal_flip = false;  // flip half of the images
};

struct LoaderOptions {
  int64_t batch_size = 128;
  bool shuffle = true;
  bool drop_last = true;  // otherwise the last batch of an epoch is smaller
  uint64_t seed = 0;
  ImageAugment augment = {};
  std::vector<float> mean = {};  // per channel, after scaling to [0, 1]; empty = 0
  std::vector<float> stddev = {};  // per channel; empty = 1
  int64_t sequence_length = 0;   // text: tokens per example (windows at random offsets)
  Device device = Device::cpu();
  int prefetch = 2;              // batches prepared ahead by the background thread (0 = none)
  /// For a CUDA device: batches are built in pinned host memory, so next() queues their copy on
  /// the compute stream and returns without waiting (the GPU never waits for a staged copy).
  bool pin_memory = true;
  /// Data parallelism: every rank walks the same global order and takes part `shard_index` of
  /// `shard_count` equal parts of each global batch (batch_size must divide evenly).
  int shard_index = 0;
  int shard_count = 1;
};

class DataLoader {
 public:
  DataLoader(Dataset data, LoaderOptions options);
  ~DataLoader();
  DataLoader(const DataLoader&) = delete;
  DataLoader& operator=(const DataLoader&) = delete;

  int64_t batches_per_epoch() const;
  /// The next batch (wrapping into the next epoch), already on options.device.
  Batch next();
  /// Restarts at (epoch, batch index): the next call to next() returns that batch.
  void seek(int64_t epoch, int64_t index);
  /// Position of the batch the next call to next() will return.
  std::pair<int64_t, int64_t> position() const { return {epoch_, index_}; }

  /// The batch at (epoch, index), on the host (what the worker thread computes).
  Batch make_batch(int64_t epoch, int64_t index) const;

 private:
  /// Host memory for a batch: pinned when it is headed for a GPU.
  Tensor host_buffer(Shape shape, DType dtype) const;
  void start_worker();
  void stop_worker();
  void advance(int64_t& epoch, int64_t& index) const;
  const std::vector<int32_t>& order_for(int64_t epoch) const;

  Dataset data_;
  LoaderOptions opt_;
  int64_t epoch_ = 0, index_ = 0;
  mutable std::mutex order_mu_;
  mutable int64_t order_epoch_ = -1;
  mutable std::vector<int32_t> order_;

  std::thread worker_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Batch> ready_;
  bool stop_ = false;
};

}  // namespace loom::train
