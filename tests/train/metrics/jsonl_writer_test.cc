#include "train/metrics/jsonl_writer.h"

#include <cmath>
#include <fstream>
#include <sstream>

#include "tests/support/testing.h"
#include "tests/train/io/io_test_util.h"

namespace loom::train {
namespace {

using loom::testing::TempDir;

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

TEST(JsonlWriter, OneObjectPerLineWithTheUsualFieldsInOrder) {
  TempDir dir;
  const std::string path = dir.file("logs/metrics.jsonl");  // parent created
  {
    JsonlWriter w(path);
    w.write(MetricsRecord{.step = 100,
                          .split = "train",
                          .loss = 0.5,
                          .accuracy = 0.75,
                          .lr = 0.001,
                          .step_time_ms = 12.5,
                          .samples_per_sec = 10240.0});
    w.write(MetricsRecord{
        .step = 100, .split = "eval", .epoch = 2, .loss = 0.25, .extra = {{"note", "x"}}});
  }
  EXPECT_EQ(read_text(path),
            "{\"step\":100,\"split\":\"train\",\"loss\":0.5,\"accuracy\":0.75,\"lr\":0.001,"
            "\"step_time_ms\":12.5,\"samples_per_sec\":10240.0}\n"
            "{\"step\":100,\"split\":\"eval\",\"epoch\":2,\"loss\":0.25,\"note\":\"x\"}\n");
}

TEST(JsonlWriter, EachLineIsFlushedAndAppendModeContinuesAResumedRun) {
  TempDir dir;
  const std::string path = dir.file("m.jsonl");
  JsonlWriter w(path);
  w.write(nlohmann::json{{"step", 1}, {"loss", 2.0}});
  EXPECT_EQ(read_text(path), "{\"loss\":2.0,\"step\":1}\n");  // visible while still open
  w.close();
  {
    JsonlWriter resumed(path);  // append is the default
    resumed.write(MetricsRecord{.step = 2, .loss = 1.0});
  }
  std::vector<nlohmann::json> lines = read_jsonl(path);
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(lines[0]["step"], 1);
  EXPECT_EQ(lines[1]["step"], 2);
  EXPECT_EQ(lines[1]["split"], "train");
  {
    JsonlWriter fresh(path, /*append=*/false);
    fresh.write(MetricsRecord{.step = 7});
  }
  ASSERT_EQ(read_jsonl(path).size(), 1u);
}

TEST(JsonlWriter, NonFiniteNumbersBecomeNull) {
  nlohmann::json j = to_json(
      MetricsRecord{.step = 3, .loss = NAN, .lr = INFINITY, .extra = {{"grad_norm", -INFINITY}}});
  EXPECT_TRUE(j["loss"].is_null());
  EXPECT_TRUE(j["lr"].is_null());
  EXPECT_TRUE(j["grad_norm"].is_null());
  EXPECT_FALSE(j.contains("accuracy"));  // unset fields are left out
}

TEST(JsonlWriter, ReaderSkipsATruncatedLastLineOnly) {
  TempDir dir;
  const std::string path = dir.file("m.jsonl");
  loom::testing::write_bytes(path, {});
  {
    std::ofstream out(path, std::ios::binary);
    out << "{\"step\":1}\n\n{\"step\":2}\n{\"step\":3,\"lo";  // killed mid-line
  }
  std::vector<nlohmann::json> lines = read_jsonl(path);
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(lines[1]["step"], 2);
  {
    std::ofstream out(path, std::ios::binary);
    out << "{\"step\":1}\nnot json\n{\"step\":2}\n";
  }
  EXPECT_THROW_WITH(read_jsonl(path), FormatError, path, "line 2");
  {
    std::ofstream out(path, std::ios::binary);
    out << "[1, 2]\n";
  }
  EXPECT_THROW_WITH(read_jsonl(path), FormatError, "line 1", "not a JSON object");
  EXPECT_THROW_WITH(read_jsonl(dir.file("missing.jsonl")), IOError, "missing.jsonl");
}

TEST(JsonlWriter, Errors) {
  TempDir dir;
  JsonlWriter w(dir.file("m.jsonl"));
  EXPECT_THROW_WITH(w.write(nlohmann::json::array({1, 2})), ValueError, "JSON object", "array");
  EXPECT_THROW_WITH(w.write(MetricsRecord{.extra = 5}), ValueError, "extra", "number");
  w.close();
  EXPECT_THROW_WITH(w.write(MetricsRecord{}), IOError, "closed");
  loom::testing::write_bytes(dir.file("file"), {1});
  EXPECT_THROW_WITH(JsonlWriter(dir.file("file/m.jsonl")), IOError, "JsonlWriter");
}

}  // namespace
}  // namespace loom::train
