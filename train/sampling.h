// Text generation from a byte-level language model (`loom sample`).
#pragma once
#include <string>

#include "core/random.h"
#include "train/model_zoo.h"

namespace loom::train {

struct SampleOptions {
  int64_t max_new_tokens = 200;
  double temperature = 0.8;   // 0: greedy
  int64_t context = 128;      // the model's window (its max_len)
  uint64_t seed = 0;
};

/// Continues `prompt` one byte at a time: each step runs the model on the last `context` bytes
/// and draws the next byte from softmax(logits / temperature) with jax.random.categorical's
/// Gumbel trick on key fold_in(key(seed), step). No cache: every step recomputes the window.
std::string sample_text(const ZooModel& model, const Tree& variables, const std::string& prompt,
                        const SampleOptions& options, Device device);

}  // namespace loom::train
