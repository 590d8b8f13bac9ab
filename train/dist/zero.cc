#include "train/dist/zero.h"

#include <algorithm>

#include "core/ops/shape.h"

namespace loom::dist {

ShardedOptimizer::ShardedOptimizer(optim::GradientTransformation tx, const Tree& params)
    : tx_(std::move(tx)), structure_(params) {
  const std::vector<Tensor> leaves = params.leaves();
  const int64_t w = world_size();
  for (size_t i = 0; i < leaves.size(); ++i) {
    std::string name = std::string(dtype_name(leaves[i].dtype())) + "@" + leaves[i].device().str();
    auto it = std::find_if(groups_.begin(), groups_.end(), [&](const Group& g) { return g.name == name; });
    if (it == groups_.end()) {
      groups_.emplace_back();
      groups_.back().name = name;
      it = groups_.end() - 1;
    }
    it->leaves.push_back(i);
    it->size += leaves[i].numel();
  }
  for (Group& g : groups_) g.shard = (g.size + w - 1) / w;
  state_ = tx_.init(shard_of(leaves));
}

std::vector<std::string> ShardedOptimizer::groups() const {
  std::vector<std::string> names;
  for (const Group& g : groups_) names.push_back(g.name);
  return names;
}

int64_t ShardedOptimizer::shard_size(const std::string& group) const {
  for (const Group& g : groups_)
    if (g.name == group) return g.shard;
  LOOM_THROW(ValueError, "dist::ShardedOptimizer: no parameter group \"", group, "\"");
}

void ShardedOptimizer::check(const char* what, const Tree& tree) const {
  const std::string diff = structure_.first_difference(tree);
  LOOM_CHECK(diff.empty(), ShapeError, "dist::ShardedOptimizer::step: ", what,
             " differ from the params it was built for at ", diff);
  std::vector<std::pair<std::string, Tensor>> want = structure_.flatten(), got = tree.flatten();
  for (size_t i = 0; i < want.size(); ++i)
    LOOM_CHECK(want[i].second.shape() == got[i].second.shape() &&
                   want[i].second.dtype() == got[i].second.dtype(),
               ShapeError, "dist::ShardedOptimizer::step: ", what, " ", want[i].first, " is ",
               shape_str(got[i].second.shape()), " ", dtype_name(got[i].second.dtype()),
               ", the params it was built for ", shape_str(want[i].second.shape()), " ",
               dtype_name(want[i].second.dtype()));
}

Tensor ShardedOptimizer::flat(const Group& g, const std::vector<Tensor>& leaves) const {
  std::vector<Tensor> parts;
  for (size_t i : g.leaves) parts.push_back(leaves[i].detach().reshape({-1}));
  const int64_t padding = g.shard * world_size() - g.size;
  if (padding > 0) parts.push_back(zeros({padding}, parts[0].dtype(), parts[0].device()));
  return concatenate(parts, 0);
}

Tree ShardedOptimizer::shard_of(const std::vector<Tensor>& leaves) const {
  Tree out;
  const int64_t r = rank();
  for (const Group& g : groups_)
    out.insert(g.name, slice_axis(flat(g, leaves), 0, r * g.shard, (r + 1) * g.shard));
  return out;
}

Tree ShardedOptimizer::step(const Tree& params, const Tree& local_grads) {
  check("params", params);
  check("gradients", local_grads);
  const std::vector<Tensor> p = params.leaves(), grads = local_grads.leaves();
  Tree grad_shards;
  for (const Group& g : groups_)
    grad_shards.insert(g.name, reduce_scatter(flat(g, grads), ReduceOp::Mean));
  auto [new_shards, new_state] = optim::update_and_apply(tx_, grad_shards, state_, shard_of(p));
  state_ = std::move(new_state);
  std::vector<Tensor> out(p.size());
  for (const Group& g : groups_) {
    Tensor gathered = all_gather(new_shards[g.name].tensor()).reshape({-1});
    int64_t offset = 0;
    for (size_t i : g.leaves) {
      out[i] = slice_axis(gathered, 0, offset, offset + p[i].numel()).reshape(p[i].shape());
      offset += p[i].numel();
    }
  }
  return params.unflatten(out);
}

}  // namespace loom::dist
