// CPU collectives over loom's TCP store (tcp_store.h): every rank posts its buffer under a key
// numbered by the collective's sequence number, then reads every rank's buffer and reduces them
// in rank order, so all ranks compute bitwise the same result. Small worlds and tests only.
#include <cstring>

#include "train/dist/tcp_store.h"

namespace loom::dist {
namespace {

template <typename T>
void add_into(void* acc, const uint8_t* src, size_t count) {
  T* a = static_cast<T*>(acc);
  T v;
  for (size_t i = 0; i < count; ++i) {
    std::memcpy(&v, src + i * sizeof(T), sizeof(T));
    a[i] += v;
  }
}

void add(void* acc, const uint8_t* src, size_t count, DType dtype) {
  switch (dtype) {
    case DType::F32: add_into<float>(acc, src, count); break;
    case DType::F64: add_into<double>(acc, src, count); break;
    case DType::I32: add_into<int32_t>(acc, src, count); break;
    case DType::I64: add_into<int64_t>(acc, src, count); break;
    default: LOOM_THROW(dist::DistError, "dist (tcp store): cannot reduce ", dtype_name(dtype));
  }
}

void divide(void* buf, size_t count, DType dtype, int n) {
  if (dtype == DType::F32) {
    for (size_t i = 0; i < count; ++i) static_cast<float*>(buf)[i] /= float(n);
  } else if (dtype == DType::F64) {
    for (size_t i = 0; i < count; ++i) static_cast<double*>(buf)[i] /= double(n);
  } else {
    LOOM_THROW(dist::DistError, "dist (tcp store): mean of ", dtype_name(dtype), " is not supported");
  }
}

class StoreCommunicator final : public Communicator {
 public:
  explicit StoreCommunicator(std::shared_ptr<TcpStore> store) : store_(std::move(store)) {}
  std::string backend() const override { return "tcp"; }
  int rank() const override { return store_->rank(); }
  int world_size() const override { return store_->world_size(); }
  bool reduces(DType d) const override {
    return d == DType::F32 || d == DType::F64 || d == DType::I32 || d == DType::I64;
  }

  void all_reduce(void* buf, size_t count, DType dtype, ReduceOp op) override {
    reduce_range(buf, buf, 0, count, count, dtype, op);
  }

  void broadcast(void* buf, size_t count, DType dtype, int root) override {
    store_->broadcast_bytes(next_key("bc"), buf, count * dtype_size(dtype), rank() == root);
  }

  void all_gather(const void* send, void* recv, size_t count, DType dtype) override {
    const size_t bytes = count * dtype_size(dtype);
    std::string key = post(send, bytes);
    for (int r = 0; r < world_size(); ++r) {
      std::vector<uint8_t> v = store_->get(key + std::to_string(r));
      check_size(v, bytes, key);
      std::memcpy(static_cast<uint8_t*>(recv) + size_t(r) * bytes, v.data(), bytes);
    }
  }

  void reduce_scatter(const void* send, void* recv, size_t count, DType dtype,
                      ReduceOp op) override {
    reduce_range(send, recv, size_t(rank()) * count, count, count * size_t(world_size()), dtype,
                 op);
  }

  void barrier() override {
    std::string key = post(nullptr, 0);
    for (int r = 0; r < world_size(); ++r) store_->get(key + std::to_string(r));
  }

  void abort(int exit_code) override { std::_Exit(exit_code); }

 private:
  std::string next_key(const char* what) { return detail::cat(what, "/", seq_++, "/"); }

  /// Posts this rank's bytes for every rank to read once; returns the key prefix.
  std::string post(const void* data, size_t bytes) {
    std::string key = next_key("c");
    const uint8_t* p = static_cast<const uint8_t*>(data);
    store_->set(key + std::to_string(rank()),
                bytes ? std::vector<uint8_t>(p, p + bytes) : std::vector<uint8_t>{},
                uint32_t(world_size()));
    return key;
  }

  static void check_size(const std::vector<uint8_t>& v, size_t bytes, const std::string& key) {
    LOOM_CHECK(v.size() == bytes, dist::DistError, "dist (tcp store): ", key, " holds ", v.size(),
               " bytes, expected ", bytes, " (ranks called different collectives?)");
  }

  /// recv[0..count) = op over ranks of send[offset .. offset + count), send being `total` long.
  void reduce_range(const void* send, void* recv, size_t offset, size_t count, size_t total,
                    DType dtype, ReduceOp op) {
    const size_t es = dtype_size(dtype);
    std::string key = post(send, total * es);
    std::vector<uint8_t> acc(count * es);
    for (int r = 0; r < world_size(); ++r) {
      std::vector<uint8_t> v = store_->get(key + std::to_string(r));
      check_size(v, total * es, key);
      if (r == 0) std::memcpy(acc.data(), v.data() + offset * es, count * es);
      else add(acc.data(), v.data() + offset * es, count, dtype);
    }
    if (op == ReduceOp::Mean) divide(acc.data(), count, dtype, world_size());
    std::memcpy(recv, acc.data(), count * es);
  }

  std::shared_ptr<TcpStore> store_;
  uint64_t seq_ = 0;
};

}  // namespace

std::unique_ptr<Communicator> make_store_communicator(std::shared_ptr<TcpStore> store) {
  return std::make_unique<StoreCommunicator>(std::move(store));
}

}  // namespace loom::dist
