// The models the `loom` command can train, behind one type-erased interface.
#pragma once
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "core/random.h"
#include "core/tree.h"

namespace loom::train {

/// A classifier or language model: init makes the variables ({"params", "batch_stats"?}) from a
/// sample batch; apply runs a batch, training or not, and returns the logits and the updated
/// non-param collections (batch_stats) when training.
struct ZooModel {
  std::string name;
  std::function<Tree(random::Key key, const Tensor& sample)> init;
  std::function<std::pair<Tensor, Tree>(const Tree& variables, const Tensor& inputs, bool train,
                                        random::Key dropout_key)>
      apply;
  std::function<std::string(random::Key key, const Tensor& sample)> summary;  // tabulate table
};

struct ModelSpec {
  int64_t num_classes = 10;  // classifiers; vocabulary size for language models
  int64_t sequence_length = 128;  // language models
  /// BatchNorm's axis_name in the ResNets: "batch" when training data-parallel, so the batch
  /// statistics are those of the global batch (dist::register_axis serves it).
  std::optional<std::string> batch_axis = {};
  /// Language models: the dropout rate while training (default 0.1; 0 turns dropout off).
  std::optional<double> dropout_rate = {};
};

/// Known names: "cnn" (the seed's CNN); "resnet18" ... "resnet200" (Flax's ImageNet ResNets,
/// num_classes outputs, the small-input stem for images up to 64x64, batch_stats updated while
/// training); "transformer-lm" (4 layers, d_model 128, 4 heads, context sequence_length,
/// vocabulary num_classes, dropout 0.1); "gpt2" and "gpt2-medium" (GPT-2 small and medium,
/// vocabulary 50257 and context 1024 whatever the spec). Throws ValueError listing the known names otherwise.
ZooModel make_model(const std::string& name, const ModelSpec& spec);
std::vector<std::string> model_names();

}  // namespace loom::train
