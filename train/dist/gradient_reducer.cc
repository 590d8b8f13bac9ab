#include "train/dist/gradient_reducer.h"

#include "core/ops/shape.h"

namespace loom::dist {

GradientReducer::GradientReducer(const Tree& params, ReduceOp op) : op_(op) {
  std::vector<std::pair<std::string, Tensor>> flat = params.flatten();
  const size_t n = flat.size(), limit = bucket_bytes();
  paths_.reserve(n);
  params_.reserve(n);
  for (auto& [path, leaf] : flat) {
    paths_.push_back(path);
    params_.push_back(leaf);
  }
  grads_.resize(n);
  bucket_of_.resize(n);
  size_t bytes = 0;
  for (size_t k = n; k-- > 0;) {
    const Tensor& leaf = flat[k].second;
    bool fits = !buckets_.empty() && bytes + leaf.nbytes() <= limit;
    if (fits) {
      const Tensor& first = flat[buckets_.back().leaves.front()].second;
      fits = first.dtype() == leaf.dtype() && first.device() == leaf.device();
    }
    if (!fits) {
      buckets_.emplace_back();
      bytes = 0;
    }
    buckets_.back().leaves.push_back(k);
    ++buckets_.back().waiting;
    bucket_of_[k] = buckets_.size() - 1;
    bytes += leaf.nbytes();
  }
}

GradientReducer::~GradientReducer() {
  for (Bucket& b : buckets_) {
    if (!b.pending) continue;
    try {
      b.pending->wait();
    } catch (const std::exception&) {
      // Already failing (this destructor runs during unwinding or after a DistError): the
      // buffer only has to outlive the collective, which has ended either way.
    }
  }
}

autograd::LeafReadyFn GradientReducer::hook() {
  return [this](int64_t leaf, const Tensor& grad) { ready(leaf, grad); };
}

void GradientReducer::ready(int64_t leaf, const Tensor& grad) {
  LOOM_CHECK(leaf >= 0 && size_t(leaf) < grads_.size() && !grads_[size_t(leaf)].defined(),
             ValueError, "dist::GradientReducer: leaf ", leaf, " reported twice or outside the ",
             grads_.size(), " parameters");
  const Tensor& param = params_[size_t(leaf)];
  LOOM_CHECK(grad.shape() == param.shape() && grad.dtype() == param.dtype(), ShapeError,
             "dist::GradientReducer: the gradient of ", paths_[size_t(leaf)], " is ",
             shape_str(grad.shape()), " ", dtype_name(grad.dtype()), " but the parameter is ",
             shape_str(param.shape()), " ", dtype_name(param.dtype()));
  grads_[size_t(leaf)] = grad.detach();
  ++reported_;
  --buckets_[bucket_of_[size_t(leaf)]].waiting;
  // MPI moves non-blocking collectives only inside MPI calls: poke those in flight.
  for (size_t b = 0; b < next_; ++b)
    if (buckets_[b].pending) buckets_[b].pending->test();
  while (next_ < buckets_.size() && buckets_[next_].waiting == 0) launch(buckets_[next_++]);
}

void GradientReducer::launch(Bucket& b) {
  std::vector<Tensor> parts;
  parts.reserve(b.leaves.size());
  for (size_t k : b.leaves) parts.push_back(grads_[k].reshape({-1}));
  const Tensor& first = parts.front();
  Communicator& comm = communicator(first.device());
  // The collective works in place: always on a buffer of our own, never on a gradient that
  // another leaf's gradient may share. MPI has no bfloat16/float16 sum: reduce those in float32
  // and round once, as dist::all_reduce does.
  const DType wire = comm.reduces(first.dtype()) ? first.dtype() : DType::F32;
  if (parts.size() > 1) b.flat = concatenate(parts, 0).to(wire);
  else if (wire != first.dtype()) b.flat = first.to(wire);
  else b.flat = fresh_copy(first);
  b.pending = comm.all_reduce_async(b.flat.raw_data(), size_t(b.flat.numel()), wire, op_);
  launched_after_.push_back(reported_);
}

std::vector<Tensor> GradientReducer::finish() {
  for (size_t k = 0; k < grads_.size(); ++k)
    LOOM_CHECK(grads_[k].defined(), ValueError, "dist::GradientReducer::finish: the gradient of ",
               paths_[k], " was never reported (", reported_, " of ", grads_.size(),
               " leaves were)");
  std::vector<Tensor> out(grads_.size());
  for (Bucket& b : buckets_) {
    b.pending->wait();
    b.pending.reset();
    int64_t offset = 0;
    for (size_t k : b.leaves) {
      const Tensor& g = grads_[k];
      out[k] = slice_axis(b.flat, 0, offset, offset + g.numel()).reshape(g.shape()).to(g.dtype());
      offset += g.numel();
    }
    b.flat = Tensor();
  }
  return out;
}

}  // namespace loom::dist
