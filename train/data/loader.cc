#include "train/data/loader.h"

#include <algorithm>
#include <cstring>

#include <omp.h>

#include "core/error.h"

namespace loom::train {

DataLoader::DataLoader(Dataset data, LoaderOptions options)
    : data_(std::move(data)), opt_(std::move(options)) {
  LOOM_CHECK(opt_.batch_size > 0, ValueError, "DataLoader: batch_size must be positive, got ",
             opt_.batch_size);
  LOOM_CHECK(data_.size() > 0, ValueError, "DataLoader: dataset '", data_.name, "' is empty");
  if (data_.is_text()) {
    LOOM_CHECK(opt_.sequence_length > 0, ValueError,
               "DataLoader: a text dataset needs sequence_length > 0");
    LOOM_CHECK(data_.size() > opt_.sequence_length + 1, ValueError, "DataLoader: text '",
               data_.name, "' has ", data_.size(), " tokens, fewer than sequence_length + 2 (",
               opt_.sequence_length + 2, ")");
  } else {
    LOOM_CHECK(data_.inputs.ndim() == 4 && data_.inputs.dtype() == DType::U8, ShapeError,
               "DataLoader: images must be U8 [N, H, W, C], got ",
               dtype_name(data_.inputs.dtype()), shape_str(data_.inputs.shape()));
    int64_t c = data_.inputs.dim(3);
    for (const auto* v : {&opt_.mean, &opt_.stddev})
      LOOM_CHECK(v->empty() || int64_t(v->size()) == c, ShapeError, "DataLoader: mean/stddev have ",
                 v->size(), " entries for ", c, " channels");
  }
  LOOM_CHECK(opt_.shard_count >= 1 && opt_.shard_index >= 0 && opt_.shard_index < opt_.shard_count &&
                 opt_.batch_size % opt_.shard_count == 0,
             ValueError, "DataLoader: batch_size ", opt_.batch_size, " does not split into ",
             opt_.shard_count, " equal shards (shard ", opt_.shard_index, ")");
  LOOM_CHECK(batches_per_epoch() > 0, ValueError, "DataLoader: dataset '", data_.name, "' (",
             data_.size(), " examples) has no complete batch of ", opt_.batch_size);
  start_worker();
}

DataLoader::~DataLoader() { stop_worker(); }

int64_t DataLoader::batches_per_epoch() const {
  if (data_.is_text()) return (data_.size() - 1) / (opt_.batch_size * opt_.sequence_length);
  int64_t n = data_.size(), b = opt_.batch_size;
  return opt_.drop_last ? n / b : (n + b - 1) / b;
}

void DataLoader::advance(int64_t& epoch, int64_t& index) const {
  if (++index >= batches_per_epoch()) {
    index = 0;
    ++epoch;
  }
}

const std::vector<int32_t>& DataLoader::order_for(int64_t epoch) const {
  // Called with order_mu_ held.
  if (order_epoch_ != epoch) {
    int64_t n = data_.size();
    if (opt_.shuffle) {
      random::Key k = random::fold_in(random::key(int64_t(opt_.seed)), uint32_t(epoch));
      order_ = random::permutation(k, n).to_vector<int32_t>();
    } else {
      order_.resize(size_t(n));
      for (int64_t i = 0; i < n; ++i) order_[size_t(i)] = int32_t(i);
    }
    order_epoch_ = epoch;
  }
  return order_;
}

Batch DataLoader::make_batch(int64_t epoch, int64_t index) const {
  Batch out;
  out.epoch = epoch;
  out.index = index;
  // One key per batch; its bits drive every random choice inside the batch.
  random::Key batch_key = random::fold_in(
      random::fold_in(random::fold_in(random::key(int64_t(opt_.seed)), 0x6c6f6f6du), uint32_t(epoch)),
      uint32_t(index));
  const int64_t B = opt_.batch_size;
  if (data_.is_text()) {
    const int64_t T = opt_.sequence_length, n = data_.size();
    std::vector<uint32_t> r = random::bits(batch_key, {B}).to_vector<uint32_t>();
    const int32_t* tokens = data_.inputs.data<int32_t>();
    const int64_t part = B / opt_.shard_count, first = part * opt_.shard_index;  // this rank's windows
    out.inputs = host_buffer({part, T}, DType::I32);
    out.labels = host_buffer({part, T}, DType::I32);
    int32_t* x = out.inputs.data<int32_t>();
    int32_t* y = out.labels.data<int32_t>();
    for (int64_t b = 0; b < part; ++b) {
      int64_t start = int64_t(r[size_t(first + b)] % uint32_t(n - T - 1));
      std::memcpy(x + b * T, tokens + start, size_t(T) * 4);
      std::memcpy(y + b * T, tokens + start + 1, size_t(T) * 4);
    }
    return out;
  }
  std::vector<int32_t> picked;
  {
    std::lock_guard<std::mutex> lock(order_mu_);
    const std::vector<int32_t>& order = order_for(epoch);
    int64_t begin = index * B, end = std::min<int64_t>(begin + B, int64_t(order.size()));
    int64_t part = (end - begin + opt_.shard_count - 1) / opt_.shard_count;  // this rank's slice
    int64_t lo = std::min(end, begin + part * opt_.shard_index), hi = std::min(end, lo + part);
    picked.assign(order.begin() + lo, order.begin() + hi);
  }
  const int64_t nb = int64_t(picked.size());
  const int64_t H = data_.inputs.dim(1), W = data_.inputs.dim(2), C = data_.inputs.dim(3);
  const int64_t pad = opt_.augment.crop_padding;
  std::vector<uint32_t> r = random::bits(batch_key, {nb, 3}).to_vector<uint32_t>();
  std::vector<float> scale(static_cast<size_t>(C)), shift(static_cast<size_t>(C));
  for (int64_t c = 0; c < C; ++c) {
    float sd = opt_.stddev.empty() ? 1.f : opt_.stddev[size_t(c)];
    float mu = opt_.mean.empty() ? 0.f : opt_.mean[size_t(c)];
    scale[size_t(c)] = 1.f / (255.f * sd);
    shift[size_t(c)] = -mu / sd;
  }
  out.inputs = host_buffer({nb, H, W, C}, DType::F32);
  out.labels = host_buffer({nb}, DType::I32);
  float* dst = out.inputs.data<float>();
  int32_t* y = out.labels.data<int32_t>();
  const uint8_t* src = data_.inputs.data<uint8_t>();
  const int32_t* labels = data_.labels.data<int32_t>();
#pragma omp parallel for if (nb * H * W * C > 65536)
  for (int64_t b = 0; b < nb; ++b) {
    const uint8_t* img = src + int64_t(picked[size_t(b)]) * H * W * C;
    y[b] = labels[picked[size_t(b)]];
    int64_t dy = pad ? int64_t(r[size_t(b * 3)] % uint32_t(2 * pad + 1)) - pad : 0;
    int64_t dx = pad ? int64_t(r[size_t(b * 3 + 1)] % uint32_t(2 * pad + 1)) - pad : 0;
    bool flip = opt_.augment.horizontal_flip && (r[size_t(b * 3 + 2)] & 1u);
    float* o = dst + b * H * W * C;
    for (int64_t i = 0; i < H; ++i) {
      int64_t si = i + dy;
      for (int64_t j = 0; j < W; ++j) {
        int64_t sj = (flip ? W - 1 - j : j) + dx;
        bool inside = si >= 0 && si < H && sj >= 0 && sj < W;
        for (int64_t c = 0; c < C; ++c) {
          float v = inside ? float(img[(si * W + sj) * C + c]) : 0.f;
          o[(i * W + j) * C + c] = v * scale[size_t(c)] + shift[size_t(c)];
        }
      }
    }
  }
  return out;
}

Tensor DataLoader::host_buffer(Shape shape, DType dtype) const {
  return opt_.pin_memory && opt_.device.is_cuda() ? Tensor::empty_pinned(std::move(shape), dtype)
                                                   : Tensor::empty(std::move(shape), dtype);
}

void DataLoader::start_worker() {
  if (opt_.prefetch <= 0) return;
  stop_ = false;
  ready_.clear();
  worker_ = std::thread([this, epoch = epoch_, index = index_]() mutable {
    // Every OpenMP loop this thread reaches (the batch copies, each epoch's permutation) runs
    // on it alone: a team of its own would take libgomp's threads past the cores, and libgomp
    // then stops spinning between the training step's parallel regions and puts its workers to
    // sleep (the CNN's step measured 4-5% slower so; docs/PERF.md, sessions 18 and 19).
    omp_set_num_threads(1);
    while (true) {
      {
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait(lock, [&] { return stop_ || int(ready_.size()) < opt_.prefetch; });
        if (stop_) return;
      }
      Batch b;
      try {
        b = make_batch(epoch, index);
      } catch (...) {
        // The main thread reports the error when it builds the same batch itself.
        std::lock_guard<std::mutex> lock(mu_);
        ready_.push_back(Batch{Tensor(), Tensor(), epoch, index});
        cv_.notify_all();
        return;
      }
      advance(epoch, index);
      std::lock_guard<std::mutex> lock(mu_);
      ready_.push_back(std::move(b));
      cv_.notify_all();
    }
  });
}

void DataLoader::stop_worker() {
  if (!worker_.joinable()) return;
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  worker_.join();
  ready_.clear();
}

Batch DataLoader::next() {
  Batch b;
  if (opt_.prefetch <= 0) {
    b = make_batch(epoch_, index_);
  } else {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [&] { return !ready_.empty(); });
    b = std::move(ready_.front());
    ready_.pop_front();
    cv_.notify_all();
    lock.unlock();
    if (!b.inputs.defined()) b = make_batch(epoch_, index_);  // rethrows the worker's error
  }
  advance(epoch_, index_);
  b.inputs = b.inputs.to(opt_.device);
  b.labels = b.labels.to(opt_.device);
  return b;
}

void DataLoader::seek(int64_t epoch, int64_t index) {
  LOOM_CHECK(epoch >= 0 && index >= 0 && index < batches_per_epoch(), IndexError,
             "DataLoader::seek: position (", epoch, ", ", index, ") is outside an epoch of ",
             batches_per_epoch(), " batches");
  stop_worker();
  epoch_ = epoch;
  index_ = index;
  start_worker();
}

}  // namespace loom::train
