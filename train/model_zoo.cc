#include "train/model_zoo.h"

#include "modules/models/cnn.h"
#include "modules/models/resnet.h"
#include "modules/models/transformer.h"
#include "modules/tabulate.h"

namespace loom::train {
namespace {

// A module without mutable collections or dropout.
template <class M>
ZooModel stateless(const std::string& name, M module) {
  ZooModel z;
  z.name = name;
  z.init = [module](random::Key key, const Tensor& sample) { return module.init(key, sample); };
  z.apply = [module](const Tree& vars, const Tensor& x, bool, random::Key) {
    return std::pair<Tensor, Tree>{module.apply(vars, x), Tree()};
  };
  z.summary = [module](random::Key key, const Tensor& sample) {
    return nn::tabulate(module, key, sample);
  };
  return z;
}

// Images up to this size get the small-input stem (Fashion-MNIST, CIFAR).
constexpr int64_t kSmallImage = 64;

// A ResNet: batch statistics while training (the updated "batch_stats" come back), running
// statistics otherwise. The stem follows the image size of the batch.
ZooModel resnet_model(const std::string& name, nn::models::ResNet base, const ModelSpec& spec) {
  base.axis_name = spec.batch_axis;
  auto for_input = [base](const Tensor& x, bool train) {
    nn::models::ResNet m = base;
    m.small_input_stem = x.ndim() == 4 && x.dim(1) <= kSmallImage && x.dim(2) <= kSmallImage;
    m.train = train;
    return m;
  };
  ZooModel z;
  z.name = name;
  z.init = [for_input](random::Key key, const Tensor& sample) {
    return for_input(sample, true).init(key, sample);
  };
  z.apply = [for_input](const Tree& vars, const Tensor& x, bool train, random::Key) {
    if (!train) return std::pair<Tensor, Tree>{for_input(x, false).apply(vars, x), Tree()};
    auto [logits, updates] = for_input(x, true).apply_mutable(vars, {"batch_stats"}, x);
    Tree out;
    out.insert("batch_stats", updates["batch_stats"]);
    return std::pair<Tensor, Tree>{logits, out};
  };
  z.summary = [for_input](random::Key key, const Tensor& sample) {
    return nn::tabulate(for_input(sample, true), key, sample);
  };
  return z;
}

// A language model: dropout on (with the step's key) while training.
ZooModel lm_model(const std::string& name, nn::models::TransformerLM base) {
  ZooModel z;
  z.name = name;
  z.init = [base](random::Key key, const Tensor& sample) { return base.init(key, sample); };
  z.apply = [base](const Tree& vars, const Tensor& x, bool train, random::Key dropout_key) {
    nn::models::TransformerLM m = base;
    m.deterministic = !train;
    if (!train) return std::pair<Tensor, Tree>{m.apply(vars, x), Tree()};
    return std::pair<Tensor, Tree>{m.apply(vars, {.rngs = {{"dropout", dropout_key}}}, x), Tree()};
  };
  z.summary = [base](random::Key key, const Tensor& sample) {
    return nn::tabulate(base, key, sample);
  };
  return z;
}

}  // namespace

std::vector<std::string> model_names() {
  return {"cnn",       "resnet18",  "resnet34",       "resnet50", "resnet101",
          "resnet152", "resnet200", "transformer-lm", "gpt2",
          "gpt2-medium"};
}

ZooModel make_model(const std::string& name, const ModelSpec& spec) {
  using namespace nn::models;
  if (name == "cnn") return stateless(name, CNN{.num_classes = spec.num_classes});
  if (name == "resnet18") return resnet_model(name, resnet18(spec.num_classes), spec);
  if (name == "resnet34") return resnet_model(name, resnet34(spec.num_classes), spec);
  if (name == "resnet50") return resnet_model(name, resnet50(spec.num_classes), spec);
  if (name == "resnet101") return resnet_model(name, resnet101(spec.num_classes), spec);
  if (name == "resnet152") return resnet_model(name, resnet152(spec.num_classes), spec);
  if (name == "resnet200") return resnet_model(name, resnet200(spec.num_classes), spec);
  if (name == "transformer-lm")
    return lm_model(name, TransformerLM{.vocab_size = spec.num_classes,
                                        .max_len = spec.sequence_length,
                                        .num_layers = 4,
                                        .num_heads = 4,
                                        .d_model = 128,
                                        .dropout_rate = spec.dropout_rate.value_or(0.1)});
  if (name == "gpt2" || name == "gpt2-medium") {
    // GPT-2 small (or medium) whatever the dataset: its own vocabulary (byte tokens are a
    // subset) and context (the dataset's sequence length must not exceed 1024).
    TransformerLM gpt2 = name == "gpt2" ? gpt2_small() : gpt2_medium();
    gpt2.dropout_rate = spec.dropout_rate.value_or(0.1);
    return lm_model(name, gpt2);
  }
  std::string known;
  for (const auto& n : model_names()) known += (known.empty() ? "" : ", ") + n;
  LOOM_THROW(ValueError, "unknown model '", name, "' (known: ", known, ")");
}

}  // namespace loom::train
