// Host time of the tree bookkeeping around a replayed training step (loom_bench --graph, loom
// train under jit): building the state dict and the input tree, the Jit's structure check and
// leaf list, and loading the returned state. Microseconds per call, as one JSON line per model.
//
//   loom_tree_bench [--model resnet50|gpt2] [--calls N]
#include <chrono>
#include <iostream>
#include <string>

#include <nlohmann/json.hpp>

#include "core/loom.h"
#include "optim/optimizers.h"
#include "train/model_zoo.h"
#include "train/train_state.h"

using namespace loom;

namespace {

template <typename F>
double microseconds_per_call(int calls, F f) {
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < calls; ++i) f();
  return std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count() / calls;
}

nlohmann::json measure(const std::string& name, int calls) {
  const bool gpt2 = name == "gpt2";
  train::ZooModel model = train::make_model(name, {.num_classes = gpt2 ? 50257 : 1000});
  // A small sample: the state's structure, not the activations, is what is measured.
  Tensor sample = gpt2 ? zeros({1, 16}, DType::I32) : zeros({1, 32, 32, 3});
  Tree variables = model.init(random::key(0), sample);
  Tree extra = variables;
  extra.erase("params");
  train::TrainState state = train::TrainState::create(
      variables["params"], gpt2 ? optim::adamw(3e-4) : optim::sgd(0.1, 0.9), extra);
  Tree state_dict = state.state_dict();
  Tree in;
  in.insert("state", state_dict);
  nlohmann::json r{{"model", name}, {"leaves", state_dict.leaf_count()}};
  r["state_dict_us"] = microseconds_per_call(calls, [&] { (void)state.state_dict(); });
  r["insert_us"] = microseconds_per_call(calls, [&] { Tree t; t.insert("state", state_dict); });
  r["same_structure_us"] = microseconds_per_call(calls, [&] { (void)in.same_structure(in); });
  r["leaves_us"] = microseconds_per_call(calls, [&] { (void)in.leaves(); });
  r["load_state_dict_us"] = microseconds_per_call(calls, [&] { (void)state.load_state_dict(state_dict); });
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> models{"resnet50", "gpt2"};
  int calls = 200;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    if (flag == "--model") models = {argv[i + 1]};
    else if (flag == "--calls") calls = std::stoi(argv[i + 1]);
    else {
      std::cerr << "usage: loom_tree_bench [--model resnet50|gpt2] [--calls N]\n";
      return 2;
    }
  }
  for (const std::string& m : models) std::cout << measure(m, calls).dump() << "\n";
}
