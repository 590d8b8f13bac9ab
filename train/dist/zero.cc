#include "train/dist/zero.h"

#include <algorithm>
#include <limits>

#include "core/ops/elementwise.h"
#include "core/ops/reduce.h"
#include "core/ops/shape.h"

namespace loom::dist {

ShardedOptimizer::ShardedOptimizer(optim::GradientTransformation tx, const Tree& params,
                                   bool skips_nonfinite)
    : tx_(std::move(tx)), structure_(params), skips_nonfinite_(skips_nonfinite) {
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
  if (skips_nonfinite_ && !groups_.empty()) {
    // x * 0 is 0 for finite x and NaN otherwise, so the psum is NaN when any rank's shard holds
    // an Inf or NaN; then every rank poisons its shard and tx skips the step everywhere.
    Tensor nonfinite = zeros({}, DType::F32, p[0].device());
    for (const Group& g : groups_)
      nonfinite = nonfinite + sum(grad_shards[g.name].tensor() * 0.0).to(DType::F32).to(p[0].device());
    Tensor finite = equal(psum(nonfinite), scalar_like(0, nonfinite));
    for (const Group& g : groups_) {
      const Tensor& shard = grad_shards[g.name].tensor();
      grad_shards[g.name] = where(finite.to(shard.device()), shard,
                                  shard * std::numeric_limits<double>::quiet_NaN());
    }
  }
  auto [new_shards, new_state] = optim::update_and_apply(tx_, grad_shards, state_, shard_of(p));
  state_ = std::move(new_state);
  return gather(new_shards);
}

bool ShardedOptimizer::is_shard_tree(const Tree& node) const {
  if (!node.is_dict()) return false;
  std::vector<std::string> keys = node.keys(), names = groups();
  std::sort(keys.begin(), keys.end());  // a Tree's key order need not be the groups' order
  std::sort(names.begin(), names.end());
  return keys == names;
}

Tree ShardedOptimizer::gather(const Tree& shards) const {
  const std::vector<Tensor> p = structure_.leaves();
  std::vector<Tensor> out(p.size());
  for (const Group& g : groups_) {
    Tensor gathered = all_gather(shards[g.name].tensor()).reshape({-1});
    int64_t offset = 0;
    for (size_t i : g.leaves) {
      out[i] = slice_axis(gathered, 0, offset, offset + p[i].numel()).reshape(p[i].shape());
      offset += p[i].numel();
    }
  }
  return structure_.unflatten(out);
}

Tree ShardedOptimizer::gather_all(const Tree& node) const {
  if (node.is_leaf()) return node;
  if (is_shard_tree(node)) return gather(node);
  Tree out;
  for (const auto& [key, child] : node.items()) out.insert(key, gather_all(child));
  return out;
}

Tree ShardedOptimizer::full_state() const { return gather_all(state_); }

Tree ShardedOptimizer::slice(const Tree& node, const Tree& full, const std::string& path) const {
  const std::string at = path.empty() ? "(root)" : path;
  if (node.is_leaf()) {
    LOOM_CHECK(full.is_leaf() && full.tensor().shape() == node.tensor().shape() &&
                   full.tensor().dtype() == node.tensor().dtype(),
               ShapeError, "dist::ShardedOptimizer::load_full_state: ", at, " is ",
               full.is_leaf() ? std::string(dtype_name(full.tensor().dtype())) + shape_str(full.tensor().shape())
                              : std::string("a dict"),
               ", the optimizer's ", dtype_name(node.tensor().dtype()), shape_str(node.tensor().shape()));
    return full.tensor().to(node.tensor().device());
  }
  if (is_shard_tree(node)) {
    const std::string diff = structure_.first_difference(full);
    LOOM_CHECK(diff.empty(), ShapeError, "dist::ShardedOptimizer::load_full_state: ", at,
               " differs from the params it was built for at ", diff);
    return shard_of(full.leaves());
  }
  Tree out;
  for (const auto& [key, child] : node.items()) {
    const std::string sub = path.empty() ? key : path + "/" + key;
    LOOM_CHECK(full.is_dict() && full.contains(key), ShapeError,
               "dist::ShardedOptimizer::load_full_state: the state has no ", sub);
    out.insert(key, slice(child, full[key], sub));
  }
  return out;
}

const Tree& ShardedOptimizer::load_full_state(const Tree& full) {
  state_ = slice(state_, full, "");
  return state_;
}

}  // namespace loom::dist
