#include "kernels/cuda/cudnn_attention.h"

#include "core/error.h"

#if LOOM_CUDNN_FRONTEND
#include <cudnn_frontend.h>

#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <tuple>
#include <unordered_map>

#include "core/determinism.h"
#include "kernels/cuda/cudnn_support.h"
#endif

namespace loom::cuda {

#if LOOM_CUDNN_FRONTEND
namespace {

namespace fe = cudnn_frontend;

// Variant-pack ids of the graphs' tensors.
enum Uid : int64_t { kQ = 1, kK, kV, kO, kStats, kDO, kDQ, kDK, kDV };

struct GraphKey {
  bool backward;
  int64_t batch, heads, q_len, kv_len, head_dim;
  DType dtype;
  uint64_t scale_bits;
  bool causal, deterministic;
  int device;
  auto tie() const {
    return std::tie(backward, batch, heads, q_len, kv_len, head_dim, dtype, scale_bits, causal,
                    deterministic, device);
  }
  bool operator<(const GraphKey& o) const { return tie() < o.tie(); }
};

std::string describe(const CudnnAttention& a) {
  const AttentionShape& s = a.shape;
  return detail::cat("batch ", s.batch, ", heads ", s.heads, ", q_len ", s.q_len, ", kv_len ",
                     s.kv_len, ", head_dim ", s.head_dim, ", ", dtype_name(a.dtype),
                     a.causal ? ", causal" : "");
}

void check(fe::error_t e, const CudnnAttention& a, const char* step) {
  LOOM_CHECK(e.is_good(), NotImplementedError, "dot_product_attention (cuDNN): ", step,
             " failed for ", describe(a), ": ", e.get_message(),
             "; use AttentionImplementation::Composed or Fused");
}

fe::DataType_t fe_type(DType t) {
  return t == DType::F16 ? fe::DataType_t::HALF : fe::DataType_t::BFLOAT16;
}

// A [batch, heads, len, head_dim] view of a contiguous [batch, len, heads, head_dim] tensor.
fe::graph::Tensor_attributes bhsd(const char* name, Uid uid, const AttentionShape& s, int64_t len) {
  const int64_t h = s.heads, d = s.head_dim;
  return fe::graph::Tensor_attributes()
      .set_name(name)
      .set_uid(uid)
      .set_dim({s.batch, h, len, d})
      .set_stride({len * h * d, d, h * d, 1});
}

void set_bhsd_output(const std::shared_ptr<fe::graph::Tensor_attributes>& t, Uid uid,
                     const AttentionShape& s, int64_t len) {
  const int64_t h = s.heads, d = s.head_dim;
  t->set_output(true).set_uid(uid).set_dim({s.batch, h, len, d}).set_stride({len * h * d, d, h * d, 1});
}

std::shared_ptr<fe::graph::Graph> new_graph(DType dtype) {
  auto g = std::make_shared<fe::graph::Graph>();
  g->set_io_data_type(fe_type(dtype))
      .set_intermediate_data_type(fe::DataType_t::FLOAT)
      .set_compute_data_type(fe::DataType_t::FLOAT);
  return g;
}

std::shared_ptr<fe::graph::Graph> forward_graph(const CudnnAttention& a) {
  const AttentionShape& s = a.shape;
  auto g = new_graph(a.dtype);
  auto q = g->tensor(bhsd("Q", kQ, s, s.q_len));
  auto k = g->tensor(bhsd("K", kK, s, s.kv_len));
  auto v = g->tensor(bhsd("V", kV, s, s.kv_len));
  auto options = fe::graph::SDPA_attributes()
                     .set_name("sdpa")
                     .set_generate_stats(true)
                     .set_attn_scale(float(a.scale))
                     .set_causal_mask(a.causal);
  auto [o, stats] = g->sdpa(q, k, v, options);
  set_bhsd_output(o, kO, s, s.q_len);
  stats->set_output(true).set_uid(kStats).set_data_type(fe::DataType_t::FLOAT);
  return g;
}

std::shared_ptr<fe::graph::Graph> backward_graph(const CudnnAttention& a, bool deterministic) {
  const AttentionShape& s = a.shape;
  auto g = new_graph(a.dtype);
  auto q = g->tensor(bhsd("Q", kQ, s, s.q_len));
  auto k = g->tensor(bhsd("K", kK, s, s.kv_len));
  auto v = g->tensor(bhsd("V", kV, s, s.kv_len));
  auto o = g->tensor(bhsd("O", kO, s, s.q_len));
  auto d_o = g->tensor(bhsd("dO", kDO, s, s.q_len));
  auto stats = g->tensor(fe::graph::Tensor_attributes()
                             .set_name("Stats")
                             .set_uid(kStats)
                             .set_dim({s.batch, s.heads, s.q_len, 1})
                             .set_stride({s.heads * s.q_len, s.q_len, 1, 1})
                             .set_data_type(fe::DataType_t::FLOAT));
  auto options = fe::graph::SDPA_backward_attributes()
                     .set_name("sdpa_backward")
                     .set_attn_scale(float(a.scale))
                     .set_causal_mask(a.causal)
                     .set_deterministic_algorithm(deterministic);
  auto [dq, dk, dv] = g->sdpa_backward(q, k, v, o, d_o, stats, options);
  set_bhsd_output(dq, kDQ, s, s.q_len);
  set_bhsd_output(dk, kDK, s, s.kv_len);
  set_bhsd_output(dv, kDV, s, s.kv_len);
  return g;
}

// Built graphs by key; building one costs milliseconds, executing it microseconds.
std::shared_ptr<fe::graph::Graph> cached_graph(const CudnnAttention& a, bool backward,
                                               cudnnHandle_t handle) {
  static std::mutex mu;
  static std::map<GraphKey, std::shared_ptr<fe::graph::Graph>> graphs;
  const bool det = backward && deterministic();
  uint64_t scale_bits = 0;
  std::memcpy(&scale_bits, &a.scale, sizeof scale_bits);
  const AttentionShape& s = a.shape;
  const GraphKey key{backward, s.batch, s.heads, s.q_len, s.kv_len, s.head_dim, a.dtype,
                     scale_bits, a.causal, det, a.device};
  std::lock_guard<std::mutex> lock(mu);
  auto it = graphs.find(key);
  if (it != graphs.end()) return it->second;
  auto g = backward ? backward_graph(a, det) : forward_graph(a);
  check(g->build(handle, {fe::HeurMode_t::A}), a, backward ? "building the backward graph" : "building the forward graph");
  graphs.emplace(key, g);
  return g;
}

void run(const fe::graph::Graph& g, const CudnnAttention& a, cudnnHandle_t handle,
         std::unordered_map<int64_t, void*>& pack) {
  int64_t bytes = 0;
  check(g.get_workspace_size(bytes), a, "sizing the workspace");
  CudnnWorkspace ws(size_t(bytes), a.device);
  check(g.execute(handle, pack, ws.ptr), a, "executing the graph");
}

}  // namespace

std::string cudnn_attention_unsupported(DType dtype, int64_t head_dim) {
  if (dtype != DType::BF16 && dtype != DType::F16)
    return detail::cat("it takes bfloat16 or float16, got ", dtype_name(dtype));
  if (head_dim % 8 != 0 || head_dim > 128)
    return detail::cat("it takes head_dim a multiple of 8 up to 128, got ", head_dim);
  return "";
}

void cudnn_attention_forward(const CudnnAttention& a, const void* q, const void* k,
                             const void* v, void* out, float* lse, Stream stream) {
  ensure_cudnn_device(a.device);
  cudnnHandle_t h = cudnn_handle(a.device, stream);
  auto g = cached_graph(a, false, h);
  std::unordered_map<int64_t, void*> pack{{kQ, const_cast<void*>(q)}, {kK, const_cast<void*>(k)},
                                          {kV, const_cast<void*>(v)}, {kO, out}, {kStats, lse}};
  run(*g, a, h, pack);
}

void cudnn_attention_backward(const CudnnAttention& a, const void* q, const void* k,
                              const void* v, const void* out, const void* dout, const float* lse,
                              void* dq, void* dk, void* dv, Stream stream) {
  ensure_cudnn_device(a.device);
  cudnnHandle_t h = cudnn_handle(a.device, stream);
  auto g = cached_graph(a, true, h);
  std::unordered_map<int64_t, void*> pack{
      {kQ, const_cast<void*>(q)},     {kK, const_cast<void*>(k)},
      {kV, const_cast<void*>(v)},     {kO, const_cast<void*>(out)},
      {kDO, const_cast<void*>(dout)}, {kStats, const_cast<float*>(lse)},
      {kDQ, dq},                      {kDK, dk},
      {kDV, dv}};
  run(*g, a, h, pack);
}

#else  // built without the cudnn_frontend headers

std::string cudnn_attention_unsupported(DType, int64_t) {
  return "loom was built without the cudnn_frontend headers (pip install nvidia-cudnn-frontend, "
         "then reconfigure)";
}

void cudnn_attention_forward(const CudnnAttention&, const void*, const void*, const void*, void*,
                             float*, Stream) {
  LOOM_THROW(NotImplementedError, "dot_product_attention (cuDNN): ",
             cudnn_attention_unsupported(DType::BF16, 0));
}

void cudnn_attention_backward(const CudnnAttention&, const void*, const void*, const void*,
                              const void*, const void*, const float*, void*, void*, void*, Stream) {
  LOOM_THROW(NotImplementedError, "dot_product_attention (cuDNN): ",
             cudnn_attention_unsupported(DType::BF16, 0));
}

#endif

}  // namespace loom::cuda
