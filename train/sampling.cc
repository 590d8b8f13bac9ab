#include "train/sampling.h"

#include <cmath>

#include "core/ops/shape.h"

namespace loom::train {

std::string sample_text(const ZooModel& model, const Tree& variables, const std::string& prompt,
                        const SampleOptions& opt, Device device) {
  LOOM_CHECK(opt.context > 0, ValueError, "sample: context must be positive");
  LOOM_CHECK(opt.temperature >= 0, ValueError, "sample: temperature must be >= 0, got ",
             opt.temperature);
  std::vector<int32_t> tokens;
  for (unsigned char c : prompt) tokens.push_back(int32_t(c));
  if (tokens.empty()) tokens.push_back(int32_t('\n'));
  std::string out;
  random::Key root = random::key(int64_t(opt.seed));
  for (int64_t step = 0; step < opt.max_new_tokens; ++step) {
    int64_t n = std::min<int64_t>(int64_t(tokens.size()), opt.context);
    std::vector<int32_t> window(tokens.end() - n, tokens.end());
    Tensor x = from_vector(window, {1, n}).to(device);
    Tensor logits = model.apply(variables, x, false, random::Key{}).first;  // [1, n, V]
    std::vector<float> last = slice_axis(logits, 1, n - 1, n).to_vector<float>();
    int32_t next = 0;
    if (opt.temperature == 0) {
      for (size_t v = 1; v < last.size(); ++v)
        if (last[v] > last[size_t(next)]) next = int32_t(v);
    } else {
      // Gumbel-max: argmax(logits / T + g), g = -log(-log(u)), as jax.random.categorical.
      std::vector<float> u = random::uniform(random::fold_in(root, uint32_t(step)),
                                             {int64_t(last.size())}, DType::F32,
                                             1e-20, 1.0).to_vector<float>();
      double best = -INFINITY;
      for (size_t v = 0; v < last.size(); ++v) {
        double score = last[v] / opt.temperature - std::log(-std::log(double(u[v])));
        if (score > best) {
          best = score;
          next = int32_t(v);
        }
      }
    }
    tokens.push_back(next);
    out.push_back(char(next));
  }
  return out;
}

}  // namespace loom::train
