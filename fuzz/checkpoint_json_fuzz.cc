// libFuzzer target: the checkpoint metadata JSON (the commit marker). A real checkpoint is saved
// once per process; each input replaces its JSON file and restore() must accept it or throw a
// typed error (CorruptCheckpointError, ...), never crash or leak a nlohmann exception.
#include <filesystem>
#include <fstream>

#include "core/tensor.h"
#include "fuzz/fuzz_common.h"
#include "train/checkpoint.h"

namespace {
std::string& dir_name() {
  static std::string dir = "/tmp/loom_fuzz_ckpt_" + std::to_string(::getpid());
  return dir;
}
loom::train::CheckpointManager& manager() {
  static loom::train::CheckpointManager* m = [] {
    const std::string& dir = dir_name();
    std::filesystem::remove_all(dir);
    std::atexit([] {
      std::error_code ec;
      std::filesystem::remove_all(dir_name(), ec);
    });
    auto* mgr = new loom::train::CheckpointManager(dir, 0);
    loom::Tree state;
    state.set("params/w", loom::zeros({2, 3}, loom::DType::F32));
    mgr->save(0, state, nlohmann::json::object());
    return mgr;
  }();
  return *m;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto& mgr = manager();
  {
    std::ofstream out(mgr.metadata_path(0), std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  }
  loom_fuzz::expect_loom_error_or_success([&] {
    (void)mgr.steps();
    (void)mgr.restore(0);
  });
  return 0;
}
