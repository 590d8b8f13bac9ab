// nn::tabulate: a table of a model's module calls, as flax.linen.tabulate: one row per call in
// call order with the module path, its type, input and output shapes, and the variables the
// module itself holds (shapes and element counts per collection), then totals. It runs init, so
// the model must be runnable with the given rngs and inputs.
//
// Example:
//   std::cout << nn::tabulate(CNN{}, random::key(0), ones({1, 28, 28, 1}));
//   // path     | module | inputs             | outputs            | params
//   // ---------+--------+--------------------+--------------------+----------------------------
//   //          | CNN    | float32[1,28,28,1] | float32[1,10]      |
//   // Conv_0   | Conv   | float32[1,28,28,1] | float32[1,28,28,32]| kernel: float32[3,3,1,32]
//   //          |        |                    |                    | bias: float32[32]
//   //          |        |                    |                    | 320 (1.25 KiB)
//   // ...
//   // Total parameters: 824,458 (3.15 MiB)
#pragma once
#include <string>
#include <utility>
#include <vector>

#include "modules/module.h"

namespace loom::nn {

namespace detail {
/// Formats the recorded calls with the variables init produced.
std::string format_table(const std::string& title, const std::vector<CallRecord>& records,
                         const Tree& variables);
}  // namespace detail

template <class M, class... A>
std::string tabulate(const M& module, const Rngs& rngs, A&&... args) {
  detail::CallRecorder recorder;
  Tree variables = module.init(rngs, std::forward<A>(args)...);
  return detail::format_table(M::type_name() + " Summary", recorder.records, variables);
}

}  // namespace loom::nn
