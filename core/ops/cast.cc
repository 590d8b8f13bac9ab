#include "core/ops/cast.h"

#include <map>
#include <tuple>

#include "core/autodiff.h"
#include "core/error.h"
#if LOOM_CUDA
#include "kernels/cuda/copy.h"
#endif

namespace loom {
namespace {

/// Leaf i of `leaves` cast to targets[i]: the contiguous CUDA leaves of each (device, dtype pair)
/// by one cuda::cast_many, the others by Tensor::to.
std::vector<Tensor> cast_leaves(const std::vector<Tensor>& leaves, const std::vector<DType>& targets) {
  std::vector<Tensor> out(leaves.size());
#if LOOM_CUDA
  std::map<std::tuple<int, DType, DType>, std::vector<size_t>> groups;
  for (size_t i = 0; i < leaves.size(); ++i) {
    const Tensor& t = leaves[i];
    if (t.is_cuda() && t.is_contiguous() && t.dtype() != targets[i])
      groups[{t.device().index, t.dtype(), targets[i]}].push_back(i);
  }
  for (const auto& [key, members] : groups) {
    const auto& [device, from, to] = key;
    std::vector<cuda::CastJob> jobs;
    for (size_t i : members) {
      out[i] = Tensor::empty(leaves[i].shape(), to, leaves[i].device());
      jobs.push_back({leaves[i].raw_data(), out[i].raw_data(), leaves[i].numel()});
    }
    cuda::cast_many(jobs, from, to, cuda::current_stream(device));
    if (!is_floating(from) || !is_floating(to)) continue;  // no gradient through int casts
    for (size_t i : members) {
      out[i] = autograd::record("cast", out[i], {leaves[i]}, [from](const Tensor& g) {
        return std::vector<Tensor>{g.to(from)};
      });
    }
  }
#endif
  for (size_t i = 0; i < leaves.size(); ++i)
    if (!out[i].defined()) out[i] = leaves[i].to(targets[i]);
  return out;
}

}  // namespace

Tree cast_floating(const Tree& tree, DType dtype) {
  LOOM_CHECK(is_floating(dtype), DTypeError, "cast_floating: the target must be a floating dtype, got ",
             dtype_name(dtype));
  const std::vector<Tensor> leaves = tree.leaves();
  std::vector<DType> targets;
  for (const Tensor& t : leaves) targets.push_back(is_floating(t.dtype()) ? dtype : t.dtype());
  return tree.unflatten(cast_leaves(leaves, targets));
}

Tree cast_like(const Tree& tree, const Tree& like) {
  LOOM_CHECK(tree.same_structure(like), ValueError, "cast_like: the trees differ: ",
             tree.first_difference(like));
  const std::vector<Tensor> leaves = tree.leaves();
  std::vector<DType> targets;
  for (const Tensor& t : like.leaves()) targets.push_back(t.dtype());
  return tree.unflatten(cast_leaves(leaves, targets));
}

}  // namespace loom
