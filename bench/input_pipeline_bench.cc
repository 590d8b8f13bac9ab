// loom_input_bench: does the GPU wait for input? Times a fixed GPU workload per step (chained
// matmuls standing in for a training step) fed three ways, and prints one JSON line:
//   resident  the batch made once on the device (no input pipeline: the floor)
//   pinned    DataLoader::next() with pin_memory (batches built in page-locked memory by the
//             worker thread, copy queued on the compute stream without waiting)
//   pageable  the same loader with pin_memory off (a staged copy the host waits for)
// plus the loader alone (next() then a device synchronize) in both modes. Synthetic uint8
// images of ImageNet size go through the real pipeline (crop, flip, normalisation).
//
//   loom_input_bench [--device cuda] [--batch 256] [--image 224] [--steps 30] [--matmuls 8]
#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "bench/bench_util.h"
#include "core/memory.h"
#include "core/ops/elementwise.h"
#include "core/ops/linalg.h"
#include "core/ops/reduce.h"
#include "train/data/loader.h"

namespace {

using namespace loom;
using bench::median;
using bench::synchronize;
using Clock = std::chrono::steady_clock;

struct Options {
  std::string device = "cuda";
  int64_t batch = 256, image = 224, steps = 30, matmuls = 8;
};

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string k = argv[i], v = argv[i + 1];
    if (k == "--device") o.device = v;
    else if (k == "--batch") o.batch = std::stoll(v);
    else if (k == "--image") o.image = std::stoll(v);
    else if (k == "--steps") o.steps = std::stoll(v);
    else if (k == "--matmuls") o.matmuls = std::stoll(v);
    else {
      std::cerr << "loom_input_bench: unknown option " << k << "\n";
      std::exit(2);
    }
  }
  return o;
}

// Median wall time of `steps` calls of f (after 3 warm-up calls), each ending in a synchronize.
template <typename F>
double time_ms(Device d, int64_t steps, F&& f) {
  for (int i = 0; i < 3; ++i) f(), synchronize(d);
  std::vector<double> ms;
  for (int64_t i = 0; i < steps; ++i) {
    auto t0 = Clock::now();
    f();
    synchronize(d);
    ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
  }
  return median(ms);
}

}  // namespace

int main(int argc, char** argv) {
  Options o = parse(argc, argv);
  nlohmann::json line = {{"bench", "input_pipeline"}, {"device", o.device}, {"batch", o.batch},
                         {"image", o.image}, {"matmuls", o.matmuls}};
  try {
    Device d = Device::parse(o.device);
    check_device_usable(d, "loom_input_bench --device");
    const int64_t n = 2 * o.batch, hw = o.image * o.image * 3;
    std::vector<uint8_t> px(static_cast<size_t>(n * hw));
    for (size_t i = 0; i < px.size(); ++i) px[i] = uint8_t((i * 2654435761u) >> 24);
    std::vector<int32_t> labels(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) labels[size_t(i)] = int32_t(i % 1000);
    train::Dataset data{"synthetic", from_vector(px, {n, o.image, o.image, 3}),
                        from_vector(labels, {n}), 1000};
    auto loader_opts = [&](bool pin) {
      return train::LoaderOptions{.batch_size = o.batch, .seed = 0,
                                  .augment = {.crop_padding = 4, .horizontal_flip = true},
                                  .mean = {0.485f, 0.456f, 0.406f}, .stddev = {0.229f, 0.224f, 0.225f},
                                  .device = d, .pin_memory = pin};
    };
    Tensor w = ones({4096, 4096}, DType::F32, d) * (1.0 / 4096);
    Tensor acc = zeros({}, DType::F32, d);
    // The stand-in step reads the batch (so its copy must have landed) and runs fixed work.
    auto step = [&](const Tensor& x) {
      Tensor h = w;
      for (int64_t i = 0; i < o.matmuls; ++i) h = matmul(h, w);
      acc = acc + sum(h) * 0.0 + mean(x) * 0.0;
    };
    train::Batch resident = train::DataLoader(data, loader_opts(false)).next();
    line["resident_step_ms"] = time_ms(d, o.steps, [&] { step(resident.inputs); });
    for (bool pin : {true, false}) {
      const std::string tag = pin ? "pinned" : "pageable";
      train::DataLoader loader(data, loader_opts(pin));
      line[tag + "_step_ms"] = time_ms(d, o.steps, [&] { step(loader.next().inputs); });
      line[tag + "_loader_ms"] = time_ms(d, o.steps, [&] { (void)loader.next(); });
    }
    line["pinned_over_resident"] = line["pinned_step_ms"].get<double>() / line["resident_step_ms"].get<double>();
    line["pageable_over_resident"] = line["pageable_step_ms"].get<double>() / line["resident_step_ms"].get<double>();
    line["batch_mb"] = double(o.batch * hw * 4) / (1 << 20);
    PinnedMemoryStats ps = pinned_memory_stats();
    line["pinned_host_allocs"] = ps.host_allocs;
    line["pinned_reuses"] = ps.reuses;
  } catch (const std::exception& e) {
    line["error"] = e.what();
    std::cout << line.dump() << std::endl;
    return 1;
  }
  std::cout << line.dump() << std::endl;
  return 0;
}
