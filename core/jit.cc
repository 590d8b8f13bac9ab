#include "core/jit.h"

#include <map>
#include <string>
#include <unordered_map>
#include <unordered_set>

#include "core/error.h"
#if LOOM_CUDA
#include "kernels/cuda/caching_allocator.h"
#include "kernels/cuda/copy.h"
#include "kernels/cuda/graph.h"
#endif

namespace loom {
namespace {
// The input buffers of the step being captured with donate_inputs on this thread, else null.
thread_local const std::vector<Tensor>* donated_buffers = nullptr;
thread_local bool capturing_step = false;
}  // namespace

bool jit_capturing() { return capturing_step; }

bool donated(const Tensor& t) {
  if (!donated_buffers || !t.defined()) return false;
  for (const Tensor& b : *donated_buffers)
    if (b.storage() == t.storage() && b.offset() == t.offset() && b.shape() == t.shape() &&
        b.strides() == t.strides())
      return true;
  return false;
}

#if LOOM_CUDA
namespace {

/// Inputs at least this large are copied into the graph's buffers by the copy engine; smaller
/// ones together by one kernel.
constexpr size_t kBatchedCopyLimit = size_t(1) << 20;

/// The CUDA device every leaf is on, or -1 when a leaf is elsewhere or there is none.
int common_cuda_device(const Tree& tree) {
  int device = -1;
  for (const Tensor& t : tree.leaves()) {
    if (!t.is_cuda() || (device >= 0 && t.device().index != device)) return -1;
    device = t.device().index;
  }
  return device;
}

}  // namespace
#endif

struct Jit::State {
  Fn fn;
  JitOptions options;
  int calls = 0;
  int device = -1;
  Tree static_inputs;  // the buffers the graph reads: later calls' inputs are copied in
  std::vector<Tensor> input_buffers;  // static_inputs' leaves in flatten order
  std::unordered_set<const void*> buffer_storages;  // their storages
  Tree outputs;        // the buffers the graph writes
#if LOOM_CUDA
  std::unique_ptr<cuda::Graph> graph;

  ~State() {
    if (!graph) return;
    try {
      cuda::synchronize(device);  // no replay may still be running when its buffers move on
      graph.reset();
      outputs = Tree();
      static_inputs = Tree();
      input_buffers.clear();
      buffer_storages.clear();
      cuda::CachingAllocator::get(device).release_private_pool(this);
    } catch (...) {  // a destructor must not throw; the device is broken anyway
    }
  }

  Tensor copy_of(const Tensor& t) const {
    Tensor c = t.contiguous();
    Tensor out = Tensor::empty(t.shape(), t.dtype(), t.device());
    cuda::copy_device_to_device(out.raw_data(), c.raw_data(), out.nbytes(), device);
    return out;
  }

  /// The graph's input buffers for the capture call's inputs `in`: copies, or with donation the
  /// inputs themselves (as jax.jit reuses donated buffers), so the state is not held twice at
  /// the capture, loom's peak. A leaf that shares its storage with another leaf, or is not
  /// contiguous, is copied: an in-place update of one must not change the other.
  Tree input_buffers_for(const Tree& in) const {
    if (!options.donate_inputs) return tree_map([&](const Tensor& t) { return copy_of(t); }, in);
    std::unordered_map<const void*, int> leaves_per_storage;
    for (const Tensor& t : in.leaves()) ++leaves_per_storage[t.storage().get()];
    return tree_map([&](const Tensor& t) {
      const bool adopt = t.is_contiguous() && leaves_per_storage[t.storage().get()] == 1;
      return adopt ? t.detach() : copy_of(t);
    }, in);
  }

  void load_inputs(const Tree& in) {
    LOOM_CHECK(in.same_structure(static_inputs), ValueError,
               "loom::jit: the inputs differ from those the step was captured with: ",
               in.first_difference(static_inputs));
    cuda::set_device(device);
    std::vector<Tensor> given = in.leaves();
    // First every source, contiguous; one that is another input's buffer (an output of the last
    // replay passed back under another name) is copied aside before any buffer is written.
    std::vector<Tensor> sources(given.size());
    for (size_t i = 0; i < given.size(); ++i) {
      const Tensor& src = given[i];
      const Tensor& dst = input_buffers[i];
      LOOM_CHECK(src.shape() == dst.shape() && src.dtype() == dst.dtype() && src.is_cuda() &&
                     src.device().index == device,
                 ValueError, "loom::jit: input '", in.flatten()[i].first, "' is ",
                 shape_str(src.shape()), " ", dtype_name(src.dtype()), " on ", src.device().str(),
                 "; it was captured as ", shape_str(dst.shape()), " ", dtype_name(dst.dtype()),
                 " on cuda:", device, " (a new shape needs a new jit)");
      if (src.storage() == dst.storage() && src.offset() == dst.offset()) continue;
      sources[i] = buffer_storages.count(src.storage().get()) ? copy_of(src) : src.contiguous();
    }
    // Small inputs (a ResNet's 106 batch statistics, the step's key) are copied by one kernel
    // per dtype instead of a copy call each: host time, and a GPU copy each, at every replay.
    std::map<DType, std::vector<cuda::CastJob>> small;
    for (size_t i = 0; i < given.size(); ++i) {
      const Tensor& c = sources[i];
      if (!c.defined()) continue;
      void* dst = input_buffers[i].raw_data();
      if (c.nbytes() >= kBatchedCopyLimit) cuda::copy_device_to_device(dst, c.raw_data(), c.nbytes(), device);
      else small[c.dtype()].push_back({c.raw_data(), dst, c.numel()});
    }
    for (const auto& [dtype, jobs] : small) cuda::cast_many(jobs, dtype, dtype, cuda::current_stream(device));
  }

  Tree capture(const Tree& in) {
    static_inputs = input_buffers_for(in);
    input_buffers = static_inputs.leaves();
    buffer_storages.clear();
    for (const Tensor& b : input_buffers) buffer_storages.insert(b.storage().get());
    auto& allocator = cuda::CachingAllocator::get(device);
    graph = std::make_unique<cuda::Graph>(device, options.device_launch);
    // The eager warm-up's cached blocks go back to the driver first: the capture allocates its
    // own pool and cannot release the cache while it records (GPT-2 medium needs both otherwise).
    allocator.empty_cache();
    allocator.begin_private_pool(this);
    try {
      graph->begin_capture();
      try {
        if (options.donate_inputs) donated_buffers = &input_buffers;
        capturing_step = true;
        outputs = fn(static_inputs);
        capturing_step = false;
        donated_buffers = nullptr;
      } catch (...) {
        capturing_step = false;
        donated_buffers = nullptr;
        graph->abandon_capture();
        throw;
      }
      graph->end_capture();
    } catch (const std::exception& e) {
      allocator.end_private_pool();
      graph.reset();
      outputs = Tree();
      static_inputs = Tree();  // the caller's tensors (or copies) are not held after a failure
      input_buffers.clear();
      buffer_storages.clear();
      allocator.release_private_pool(this);
      LOOM_THROW(CudaError, "loom::jit: capturing the step as a CUDA graph failed: ", e.what(),
                 ". A captured step must not wait for the GPU (item(), to(cpu), printing) or "
                 "depend on host values that change between calls.");
    }
    allocator.end_private_pool();
    LOOM_CHECK(common_cuda_device(outputs) == device, ValueError,
               "loom::jit: the step's outputs must all be on cuda:", device);
    graph->replay();  // capturing recorded the work without running it
    return outputs;
  }
#endif
};

Jit::Jit(Fn fn, JitOptions options) : s_(std::make_unique<State>()) {
  s_->fn = std::move(fn);
  s_->options = options;
}
Jit::~Jit() = default;
Jit::Jit(Jit&&) noexcept = default;
Jit& Jit::operator=(Jit&&) noexcept = default;

bool Jit::captured() const {
#if LOOM_CUDA
  return s_->graph && s_->graph->ready();
#else
  return false;
#endif
}

std::optional<JitGraphInfo> Jit::graph_info() const {
#if LOOM_CUDA
  if (!captured()) return std::nullopt;
  const cuda::GraphNodeCounts& n = s_->graph->node_counts();
  return JitGraphInfo{.kernel_nodes = n.kernels, .copy_nodes = n.copies, .memset_nodes = n.memsets,
                      .other_nodes = n.other, .edges = n.edges,
                      .straight_line = n.straight_line,
                      .device_launched = s_->graph->device_launched(),
                      .device_launch_refusal = s_->graph->device_launch_refusal(), .last_launch_ms = s_->graph->last_launch_ms()};
#else
  return std::nullopt;
#endif
}

Tree Jit::operator()(const Tree& inputs) {
#if LOOM_CUDA
  State& s = *s_;
  if (captured()) {
    s.load_inputs(inputs);
    s.graph->replay();
    return s.outputs;
  }
  const int device = common_cuda_device(inputs);
  if (device >= 0 && s.calls >= s.options.warmup) {
    s.device = device;
    return s.capture(inputs);
  }
  ++s.calls;
#endif
  return s_->fn(inputs);
}

}  // namespace loom
