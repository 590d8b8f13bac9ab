#include "train/model_zoo.h"

#include "modules/models/cnn.h"
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

}  // namespace

std::vector<std::string> model_names() { return {"cnn"}; }

ZooModel make_model(const std::string& name, const ModelSpec& spec) {
  if (name == "cnn") return stateless(name, nn::models::CNN{.num_classes = spec.num_classes});
  std::string known;
  for (const auto& n : model_names()) known += (known.empty() ? "" : ", ") + n;
  LOOM_THROW(ValueError, "unknown model '", name, "' (known: ", known, ")");
}

}  // namespace loom::train
