#include "train/checkpoint.h"

#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <thread>

#include "tests/support/testing.h"
#include "tests/train/io/io_test_util.h"
#include "train/io/safetensors.h"

namespace loom::train {
namespace {

namespace fs = std::filesystem;
using loom::testing::read_bytes;
using loom::testing::TempDir;
using loom::testing::write_bytes;

// A training state as the loop saves it: params, batch_stats and optimizer state in one tree.
Tree make_state(float offset) {
  Tree t;
  t.set("params/Conv_0/kernel", from_vector<float>({1 + offset, 2, 3, 4, 5, 6}, {1, 2, 3}));
  t.set("params/Dense_0/bias", from_vector<float>({offset, -1}, {2}));
  t.set("batch_stats/BatchNorm_0/mean", from_vector<double>({0.5, 0.25}, {2}));
  t.set("opt_state/count", from_vector<int32_t>({int32_t(offset)}, {}));
  t.set("opt_state/mu/Dense_0/bias", from_vector<float>({0.1f, 0.2f}, {2}).to(DType::BF16));
  return t;
}

std::vector<std::string> files_in(const std::string& dir) {
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir)) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

TEST(CheckpointManager, SaveRestoreRoundTripWithMetadata) {
  TempDir dir;
  CheckpointManager ckpt(dir.file("ckpt"));
  EXPECT_FALSE(ckpt.latest_step().has_value());
  Tree s1 = make_state(1), s2 = make_state(2);
  nlohmann::json meta = {{"config", {{"model", "cnn"}, {"lr", 0.001}}},
                         {"rng", {0u, 42u}},
                         {"data_position", {{"epoch", 3}, {"batch", 17}}}};
  ckpt.save(100, s1, meta);
  ckpt.save(200, s2, {{"epoch", 4}});
  EXPECT_EQ(ckpt.steps(), (std::vector<int64_t>{100, 200}));
  EXPECT_EQ(ckpt.latest_step(), 200);
  EXPECT_EQ(files_in(dir.file("ckpt")),
            (std::vector<std::string>{"checkpoint_100.json", "checkpoint_100.safetensors",
                                      "checkpoint_200.json", "checkpoint_200.safetensors"}));

  auto [latest, latest_meta] = ckpt.restore();
  EXPECT_TRUE(tree_allclose(latest, s2, 0, 0));
  EXPECT_EQ(latest_meta["step"], 200);
  EXPECT_EQ(latest_meta["epoch"], 4);

  auto [first, first_meta] = ckpt.restore(100);
  EXPECT_TRUE(tree_allclose(first, s1, 0, 0));
  EXPECT_EQ(first.at("opt_state/mu/Dense_0/bias").tensor().dtype(), DType::BF16);
  EXPECT_EQ(first.at("opt_state/count").tensor().shape(), Shape{});
  EXPECT_EQ(first.flatten()[0].first, "params/Conv_0/kernel");  // saved order
  nlohmann::json expected = meta;
  expected["step"] = 100;
  EXPECT_EQ(first_meta, expected);

  // The data file is a plain safetensors file any reader can open.
  SafetensorsFile f = load_safetensors(ckpt.data_path(100));
  EXPECT_TRUE(f.contains("batch_stats/BatchNorm_0/mean"));
  EXPECT_EQ(f.metadata.at("step"), "100");
}

TEST(CheckpointManager, KeepsTheNewestNInNumericOrder) {
  TempDir dir;
  CheckpointManager ckpt(dir.file("ckpt"), /*keep=*/2);
  // 9 < 10 < 100 numerically, though "100" < "9" as strings.
  for (int64_t step : {9, 10, 100}) ckpt.save(step, make_state(float(step)), {});
  EXPECT_EQ(ckpt.steps(), (std::vector<int64_t>{10, 100}));
  EXPECT_FALSE(fs::exists(ckpt.data_path(9)));
  EXPECT_FALSE(fs::exists(ckpt.metadata_path(9)));
  EXPECT_TRUE(tree_allclose(ckpt.restore(10).first, make_state(10), 0, 0));

  CheckpointManager all(dir.file("all"), /*keep=*/0);
  for (int64_t step = 1; step <= 5; ++step) all.save(step, make_state(0), {});
  EXPECT_EQ(all.steps().size(), 5u);
}

TEST(CheckpointManager, RefusesAnEarlierOrEqualStepUnlessOverwrite) {
  TempDir dir;
  CheckpointManager ckpt(dir.file("ckpt"), 5);
  ckpt.save(5, make_state(5), {});
  ckpt.save(8, make_state(8), {});
  EXPECT_THROW_WITH(ckpt.save(8, make_state(0), {}), InvalidCheckpointError, "step 8",
                    "already exists", "overwrite");
  EXPECT_THROW_WITH(ckpt.save(6, make_state(0), {}), InvalidCheckpointError, "step 8", "step 6");
  EXPECT_EQ(ckpt.steps(), (std::vector<int64_t>{5, 8}));
  // Overwrite at step 6 replaces every checkpoint from step 6 on, as a run restarted from step 5
  // would: afterwards the latest checkpoint is the new one.
  ckpt.save(6, make_state(6), {}, /*overwrite=*/true);
  EXPECT_EQ(ckpt.steps(), (std::vector<int64_t>{5, 6}));
  ckpt.save(5, make_state(55), {}, /*overwrite=*/true);
  EXPECT_EQ(ckpt.steps(), (std::vector<int64_t>{5}));
  EXPECT_TRUE(tree_allclose(ckpt.restore().first, make_state(55), 0, 0));
}

TEST(CheckpointManager, IncompleteCheckpointsAreIgnoredAndCleanedUp) {
  TempDir dir;
  CheckpointManager ckpt(dir.file("ckpt"));
  ckpt.save(1, make_state(1), {});
  // A save killed after its data file was renamed but before the commit marker was written,
  // and one killed while writing the marker.
  save_tree_safetensors(ckpt.data_path(2), make_state(2));
  write_bytes(ckpt.metadata_path(3) + ".tmp", {'{', '"'});
  write_bytes(ckpt.data_path(3) + ".tmp", {1, 2, 3});
  write_bytes(dir.file("ckpt/notes.txt"), {'h', 'i'});  // foreign files are left alone
  EXPECT_EQ(ckpt.latest_step(), 1);
  EXPECT_TRUE(tree_allclose(ckpt.restore().first, make_state(1), 0, 0));
  EXPECT_THROW_WITH(ckpt.restore(2), InvalidCheckpointError, "step 2", "[1]");

  ckpt.save(2, make_state(22), {});
  EXPECT_EQ(
      files_in(dir.file("ckpt")),
      (std::vector<std::string>{"checkpoint_1.json", "checkpoint_1.safetensors",
                                "checkpoint_2.json", "checkpoint_2.safetensors", "notes.txt"}));
  EXPECT_TRUE(tree_allclose(ckpt.restore().first, make_state(22), 0, 0));
}

// Runs `save` in a forked child and returns its wait status.
template <typename Prepare>
int run_child_save(const std::string& dir, int64_t step, const Tree& state, Prepare prepare,
                   const std::string& wait_for_file) {
  pid_t pid = ::fork();
  if (pid == 0) {
    prepare();
    try {
      CheckpointManager(dir).save(step, state, {{"child", true}});
    } catch (...) {
      ::_exit(3);
    }
    ::_exit(0);
  }
  EXPECT_GT(pid, 0);
  if (!wait_for_file.empty()) {
    // Kill the child as soon as its temporary data file exists: mid-write of a 32 MiB file.
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    int status = 0;
    while (!fs::exists(wait_for_file) && ::waitpid(pid, &status, WNOHANG) == 0 &&
           std::chrono::steady_clock::now() < deadline) {
    }
    ::kill(pid, SIGKILL);
  }
  int status = 0;
  EXPECT_EQ(::waitpid(pid, &status, 0), pid);
  return status;
}

TEST(CheckpointManager, ProcessKilledWhileSavingLeavesThePreviousCheckpointLoadable) {
  TempDir dir;
  const std::string d = dir.file("ckpt");
  CheckpointManager ckpt(d);
  ckpt.save(1, make_state(1), {{"epoch", 1}});

  Tree big = make_state(2);
  big.set("params/huge", full({8, 1024, 1024}, 0.5));  // 32 MiB
  int status = run_child_save(
      d, 2, big, [] {}, ckpt.data_path(2) + ".tmp");
  ASSERT_TRUE(WIFSIGNALED(status)) << "the child finished its save before it could be killed";
  EXPECT_EQ(WTERMSIG(status), SIGKILL);

  EXPECT_EQ(ckpt.latest_step(), 1);
  auto [state, meta] = ckpt.restore();
  EXPECT_TRUE(tree_allclose(state, make_state(1), 0, 0));
  EXPECT_EQ(meta["epoch"], 1);
  // Saving again after the crash works and removes the dead save's temporary file.
  ckpt.save(2, make_state(2), {});
  EXPECT_FALSE(fs::exists(ckpt.data_path(2) + ".tmp"));
  EXPECT_TRUE(tree_allclose(ckpt.restore().first, make_state(2), 0, 0));
}

TEST(CheckpointManager, ProcessKilledAtAFixedByteOfTheDataFile) {
  TempDir dir;
  const std::string d = dir.file("ckpt");
  CheckpointManager ckpt(d);
  ckpt.save(1, make_state(1), {});
  Tree big = make_state(2);
  big.set("params/large", full({64, 1024}, 1.5));  // 256 KiB
  // RLIMIT_FSIZE makes the kernel kill the writer with SIGXFSZ when the file reaches 4 KiB: a
  // deterministic death in the middle of the data file.
  int status = run_child_save(
      d, 2, big,
      [] {
        ::signal(SIGXFSZ, SIG_DFL);
        struct rlimit lim {
          4096, 4096
        };
        ::setrlimit(RLIMIT_FSIZE, &lim);
      },
      "");
  ASSERT_TRUE(WIFSIGNALED(status));
  EXPECT_EQ(WTERMSIG(status), SIGXFSZ);
  EXPECT_EQ(fs::file_size(ckpt.data_path(2) + ".tmp"), 4096u);
  EXPECT_EQ(ckpt.latest_step(), 1);
  EXPECT_TRUE(tree_allclose(ckpt.restore().first, make_state(1), 0, 0));
}

TEST(CheckpointManager, DamagedFilesGiveTypedErrors) {
  TempDir dir;
  CheckpointManager ckpt(dir.file("ckpt"));
  ckpt.save(1, make_state(1), {});
  const std::string data = ckpt.data_path(1), marker = ckpt.metadata_path(1);
  const std::vector<uint8_t> good_data = read_bytes(data), good_marker = read_bytes(marker);

  std::vector<uint8_t> bytes = good_data;
  bytes.resize(bytes.size() - 10);
  write_bytes(data, bytes);
  EXPECT_THROW_WITH(ckpt.restore(), CorruptCheckpointError, data, "truncated",
                    std::to_string(good_data.size()));

  bytes = good_data;
  bytes.back() ^= 0x40;  // one flipped bit in the tensor data
  write_bytes(data, bytes);
  EXPECT_THROW_WITH(ckpt.restore(), CorruptCheckpointError, data, "CRC");

  fs::remove(data);
  EXPECT_THROW_WITH(ckpt.restore(), CorruptCheckpointError, data, "missing");

  // Bytes whose size and CRC match the marker but that are not safetensors: the safetensors
  // parser's FormatError comes back as a CorruptCheckpointError naming the file.
  std::vector<uint8_t> junk(good_data.size(), 0xFF);
  write_bytes(data, junk);
  nlohmann::json m = nlohmann::json::parse(good_marker.begin(), good_marker.end());
  m["data_crc32"] = uint32_t(crc32(crc32(0L, Z_NULL, 0), junk.data(), uInt(junk.size())));
  std::string text = m.dump();
  write_bytes(marker, std::vector<uint8_t>(text.begin(), text.end()));
  EXPECT_THROW_WITH(ckpt.restore(), CorruptCheckpointError, data);

  write_bytes(data, good_data);
  write_bytes(marker, {'{', '"', 's'});
  EXPECT_THROW_WITH(ckpt.restore(), CorruptCheckpointError, marker, "not a JSON object");
  m = nlohmann::json::parse(good_marker.begin(), good_marker.end());
  m["step"] = 7;
  text = m.dump();
  write_bytes(marker, std::vector<uint8_t>(text.begin(), text.end()));
  EXPECT_THROW_WITH(ckpt.restore(), CorruptCheckpointError, marker, "step 7");
  m["step"] = 1;
  m["data_file"] = "../elsewhere.safetensors";
  text = m.dump();
  write_bytes(marker, std::vector<uint8_t>(text.begin(), text.end()));
  EXPECT_THROW_WITH(ckpt.restore(), CorruptCheckpointError, marker, "elsewhere");
  m["data_file"] = "checkpoint_1.safetensors";
  m.erase("data_crc32");
  m["step"] = 1;
  text = m.dump();
  write_bytes(marker, std::vector<uint8_t>(text.begin(), text.end()));
  EXPECT_THROW_WITH(ckpt.restore(), CorruptCheckpointError, marker, "malformed");

  // Every one of these is also a FormatError / IOError for callers that catch broadly.
  write_bytes(marker, good_marker);
  write_bytes(data, {1, 2});
  EXPECT_THROW(ckpt.restore(), FormatError);
}

TEST(CheckpointManager, RestoreIntoMatchesTheTargetOrReportsEveryDifference) {
  TempDir dir;
  CheckpointManager ckpt(dir.file("ckpt"));
  ckpt.save(3, make_state(3), {{"epoch", 1}});

  // The target's order, an empty subtree (an optimizer state with no arrays) and leaf dtypes.
  Tree target;
  target.set("opt_state/count", zeros({}, DType::I32));
  target.set("opt_state/mu/Dense_0/bias", zeros({2}, DType::BF16));
  target.set("opt_state/empty", Tree::dict());
  target.set("batch_stats/BatchNorm_0/mean", zeros({2}, DType::F64));
  target.set("params/Dense_0/bias", zeros({2}));
  target.set("params/Conv_0/kernel", zeros({1, 2, 3}));
  auto [restored, meta] = ckpt.restore_into(target);
  EXPECT_EQ(meta["step"], 3);
  EXPECT_TRUE(restored.same_structure(target));
  EXPECT_TRUE(restored.at("opt_state/empty").empty());
  EXPECT_EQ(restored.flatten()[0].first, "opt_state/count");
  Tree without_empty = restored;
  without_empty.erase_path("opt_state/empty");
  EXPECT_TRUE(tree_allclose(without_empty, make_state(3), 0, 0));

  Tree wrong;
  wrong.set("params/Conv_0/kernel", zeros({3, 3}));          // shape mismatch
  wrong.set("params/Dense_0/bias", zeros({2}, DType::F64));  // dtype mismatch
  wrong.set("params/Dense_1/kernel", zeros({4, 2}));         // missing from the checkpoint
  wrong.set("batch_stats/BatchNorm_0/mean", zeros({2}, DType::F64));
  try {
    ckpt.restore_into(wrong);
    ADD_FAILURE() << "expected CheckpointMismatchError";
  } catch (const CheckpointMismatchError& e) {
    std::string msg = e.what();
    for (const char* part :
         {"checkpoint_3.safetensors", "1 missing, 2 unexpected, 2 mismatched",
          "missing:    params/Dense_1/kernel (model: [4, 2] float32)",
          "mismatched: params/Conv_0/kernel checkpoint [1, 2, 3] float32, model [3, 3] float32",
          "mismatched: params/Dense_0/bias checkpoint [2] float32, model [2] float64",
          "unexpected: opt_state/count (checkpoint: [] int32)",
          "unexpected: opt_state/mu/Dense_0/bias (checkpoint: [2] bfloat16)"})
      EXPECT_NE(msg.find(part), std::string::npos) << "'" << msg << "' lacks '" << part << "'";
    EXPECT_EQ(e.missing(), (std::vector<std::string>{"params/Dense_1/kernel"}));
    EXPECT_EQ(e.unexpected().size(), 2u);
    EXPECT_EQ(e.mismatched(),
              (std::vector<std::string>{"params/Conv_0/kernel", "params/Dense_0/bias"}));
  }
}

TEST(CheckpointManager, Errors) {
  TempDir dir;
  CheckpointManager ckpt(dir.file("ckpt"));
  EXPECT_THROW_WITH(ckpt.restore(), InvalidCheckpointError, "no complete checkpoint", "ckpt");
  EXPECT_THROW_WITH(ckpt.save(-1, make_state(0), {}), ValueError, "step -1");
  EXPECT_THROW_WITH(ckpt.save(1, Tree(zeros({2, 2})), {}), ValueError, "dict", "[2, 2]");
  EXPECT_THROW_WITH(ckpt.save(1, make_state(0), nlohmann::json::array()), ValueError, "metadata",
                    "array");
  EXPECT_THROW_WITH(CheckpointManager(""), ValueError, "empty");
  write_bytes(dir.file("file"), {1});
  EXPECT_THROW_WITH(CheckpointManager(dir.file("file/ckpt")).save(1, make_state(0), {}), IOError,
                    "file/ckpt");
}

}  // namespace
}  // namespace loom::train
