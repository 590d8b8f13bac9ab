// flax.linen.Sequential: layers applied in order, each a module or a plain function
// Tensor -> Tensor. Modules built inside a running body keep the name they reserved there (as
// Flax: Sequential({Dense, relu, Dense}) in a compact method gives Dense_0, Dense_1 beside
// Sequential_0); modules built outside any body are named "layers_<index>" inside the
// Sequential, as Flax names list attributes.
//
// Example:
//   auto mlp = nn::Sequential{.layers = {nn::Dense{.features = 64}, nn::relu,
//                                        nn::Dense{.features = 10}}};
//   Tree vars = mlp.init(random::key(0), x);   // params: layers_0, layers_2
#pragma once
#include <functional>
#include <memory>
#include <string>
#include <type_traits>
#include <vector>

#include "modules/module.h"

namespace loom::nn {

/// One step of a Sequential: a module (held by shared pointer, so copies of the Sequential are
/// the same layers) or a function.
class Layer {
 public:
  template <class M>
    requires requires(const M& m, const Tensor& x) {
      { m(x) } -> std::convertible_to<Tensor>;
      m.named("x");
    }
  Layer(M module)  // NOLINT(google-explicit-constructor)
      : fn_([m = std::make_shared<M>(std::move(module))](const Tensor& x, size_t index) {
          if (m->name().empty()) return Tensor((*m).named("layers_" + std::to_string(index))(x));
          return Tensor((*m)(x));
        }) {}
  /// Functions and lambdas Tensor -> Tensor (nn::relu, [](const Tensor& h) { ... }).
  template <class F>
    requires(std::is_invocable_r_v<Tensor, const F&, const Tensor&> &&
             !requires(const F& f) { f.named("x"); })
  Layer(F fn)  // NOLINT(google-explicit-constructor)
      : fn_([fn = std::move(fn)](const Tensor& x, size_t) { return Tensor(fn(x)); }) {}

  Tensor operator()(const Tensor& x, size_t index) const { return fn_(x, index); }

 private:
  std::function<Tensor(const Tensor&, size_t)> fn_;
};

struct Sequential : Module<Sequential> {
  std::vector<Layer> layers = {};

  Tensor call(const Tensor& x) const {
    LOOM_CHECK(!layers.empty(), ValueError, "Empty Sequential module at ", path_text(), ".");
    Tensor y = x;
    for (size_t i = 0; i < layers.size(); ++i) y = layers[i](y, i);
    return y;
  }
};

}  // namespace loom::nn
